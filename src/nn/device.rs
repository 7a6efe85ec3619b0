//! The device a model runs on, as the configuration names it, and the candle device for it.

use serde::Deserialize;

use crate::yaml::BadChoice;

/// The device could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("device {device}: {reason}")]
pub struct DeviceError {
    /// The device as named (`cuda:1`).
    pub device: String,
    /// What candle reported.
    pub reason: String,
}

/// `cpu` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_device(&text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Reads `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<DeviceSpec, BadChoice> {
    if s == "cpu" {
        return Ok(DeviceSpec::Cpu);
    }
    if let Some(n) = s.strip_prefix("cuda:") {
        if let Ok(n) = n.parse() {
            return Ok(DeviceSpec::Cuda(n));
        }
    }
    if s == "cuda" {
        return Ok(DeviceSpec::Cuda(0));
    }
    Err(BadChoice(format!("expected `cpu` or `cuda:N`, got `{s}`")))
}

impl DeviceSpec {
    /// The candle device: CUDA devices fail here when the build has no `cuda` feature or the
    /// device does not exist.
    pub fn open(self) -> Result<candle_core::Device, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => candle_core::Device::new_cuda(n).map_err(|e| DeviceError {
                device: self.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
