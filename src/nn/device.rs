//! The device a model runs on, as the configuration names it, and the candle device for it;
//! the precision its weights and activations are kept in.

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

/// The floating-point type of a model's weights and activations (`detector.dtype`,
/// `pose.dtype`): `f32` (the reference), or `f16` / `bf16`, which halve memory traffic on a
/// GPU at some cost in accuracy. Pre- and post-processing stay in f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16: f32's range with 8 bits of mantissa.
    Bf16,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::F16 => candle_core::DType::F16,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}
