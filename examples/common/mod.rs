//! The committed narrow models, for the benchmarks that need real model code without
//! full-size checkpoints. Each example uses what it needs.
#![allow(dead_code)]

use std::path::Path;

use anyhow::{Context, Result};
use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
use vidpose::pose::{HrNetConfig, PoseEstimator, PoseModelConfig, PoseOptions};

/// The committed narrow HRNet's architecture, as its reference.json describes it (stage-1
/// blocks first, then stages 2-4).
pub fn narrow_pose_config() -> Result<PoseModelConfig> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(narrow_pose_dir().join("reference.json"))?)?;
    let list = |key: &str| -> Vec<usize> {
        json[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as usize)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (widths, modules, blocks, input) = (
        list("widths"),
        list("num_modules"),
        list("num_blocks"),
        list("input_size"),
    );
    let config = PoseModelConfig {
        backbone: HrNetConfig {
            stage1_channels: json["stage1_channels"]
                .as_u64()
                .context("stage1_channels")? as usize,
            stage1_blocks: blocks[0],
            widths: [widths[0], widths[1], widths[2], widths[3]],
            num_modules: [modules[1], modules[2], modules[3]],
            num_blocks: [blocks[1], blocks[2], blocks[3]],
        },
        input_size: (input[0] as u32, input[1] as u32),
    };
    Ok(config)
}

fn narrow_pose_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hrnet")
}

/// The committed narrow HRNet, configured as its reference.json describes it.
pub fn narrow_model() -> Result<PoseEstimator> {
    let dir = narrow_pose_dir();
    let config = narrow_pose_config()?;
    Ok(PoseEstimator::load(
        dir.join("hrnet_w4_zip.pth"),
        config,
        PoseOptions::default(),
        &candle_core::Device::Cpu,
    )?)
}

/// The committed narrow ResNeXt Cascade R-CNN (`tests/fixtures/cascade/narrow_x.safetensors`),
/// resizing frames to fit `scale` (longest, shortest side) as the published model does at
/// 1333x800.
pub fn narrow_detector(scale: (usize, usize)) -> Result<CascadeRcnn> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cascade/narrow_x.safetensors");
    let config = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 4, 2, 8, 16, scale);
    Ok(CascadeRcnn::load(
        &path,
        &config,
        &candle_core::Device::Cpu,
    )?)
}
