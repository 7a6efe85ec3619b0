//! Checkpoint files as PyTorch writes them: tiny `torch.save` files in both of its formats
//! (`scripts/make_checkpoint_fixtures.py`, `tests/fixtures/checkpoint/`) read tensor by tensor,
//! every dtype, shape and value checked; safetensors written here from the same tensors. The
//! full narrow HRNet in every format is `hrnet_parity.rs`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use vidpose::nn::{Checkpoint, CheckpointError, CheckpointFormat};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoint")
        .join(name)
}

/// Element `i` of a fixture storage of `dtype`, as the script writes it.
fn storage_value(dtype: DType, i: usize) -> f64 {
    match dtype {
        DType::U8 => 7.0 * i as f64,
        DType::I64 => i as f64 - 5.0,
        _ => i as f64 / 4.0 - 3.0,
    }
}

/// (normalised key, dtype, shape, values) of every tensor the fixtures hold, after loading:
/// `keypoint_head.` renamed `head.`, `data_preprocessor.mean` dropped.
fn expected() -> Vec<(&'static str, DType, Vec<usize>, Vec<f64>)> {
    let values = |dtype, range: std::ops::Range<usize>| -> Vec<f64> {
        range.map(|i| storage_value(dtype, i)).collect()
    };
    vec![
        (
            "backbone.bf16",
            DType::BF16,
            vec![2, 2],
            values(DType::BF16, 0..4),
        ),
        (
            "backbone.bn.num_batches_tracked",
            DType::I64,
            vec![],
            vec![12345678901.0],
        ),
        (
            "backbone.conv.weight",
            DType::F32,
            vec![2, 3, 4],
            values(DType::F32, 0..24),
        ),
        (
            "backbone.f16",
            DType::F16,
            vec![5],
            values(DType::F16, 0..5),
        ),
        (
            "backbone.f64",
            DType::F64,
            vec![3, 2],
            values(DType::F64, 0..6),
        ),
        (
            "backbone.shared",
            DType::F32,
            vec![12],
            values(DType::F32, 0..12),
        ),
        // a view into backbone.shared's storage at offset 5
        (
            "backbone.shared_view",
            DType::F32,
            vec![2, 3],
            values(DType::F32, 5..11),
        ),
        ("backbone.u8", DType::U8, vec![4], values(DType::U8, 0..4)),
        (
            "head.final_layer.weight",
            DType::F32,
            vec![3, 2, 1, 1],
            values(DType::F32, 0..6),
        ),
    ]
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn check_contents(ckpt: &Checkpoint) {
    let name = ckpt.path().display().to_string();
    let want = expected();
    let keys: Vec<&str> = want.iter().map(|w| w.0).collect();
    assert_eq!(ckpt.keys(), keys, "{name}");
    for (key, dtype, shape, vals) in want {
        let t = ckpt.get(key).unwrap();
        assert_eq!(t.dtype(), dtype, "{name}: {key}");
        assert_eq!(t.dims(), shape, "{name}: {key}");
        assert_eq!(values(t), vals, "{name}: {key}");
    }
}

#[test]
fn torch_files_read_exactly() {
    for (file, format) in [
        ("formats_zip.pth", CheckpointFormat::TorchZip),
        ("formats_bare_zip.pth", CheckpointFormat::TorchZip),
        ("formats_legacy.pth", CheckpointFormat::TorchLegacy),
        ("formats_bare_legacy.pth", CheckpointFormat::TorchLegacy),
    ] {
        let ckpt = Checkpoint::open(fixture(file)).unwrap();
        assert_eq!(ckpt.format(), format, "{file}");
        check_contents(&ckpt);
    }
}

#[test]
fn safetensors_read_exactly() {
    // the same tensors, with the file's original names (0.x head, data_preprocessor entry)
    let torch = Checkpoint::open(fixture("formats_zip.pth")).unwrap();
    let mut tensors: HashMap<String, Tensor> = torch
        .keys()
        .into_iter()
        .map(|k| {
            let name = match k.strip_prefix("head.") {
                Some(rest) => format!("keypoint_head.{rest}"),
                None => k.to_string(),
            };
            (name, torch.get(k).unwrap().clone())
        })
        .collect();
    tensors.insert(
        "data_preprocessor.mean".into(),
        Tensor::new(&[1f32, 2.0, 3.0], &candle_core::Device::Cpu).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("formats.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    assert_eq!(ckpt.format(), CheckpointFormat::Safetensors);
    check_contents(&ckpt);
}

#[test]
fn non_contiguous_tensors_are_refused() {
    for file in ["noncontiguous_zip.pth", "noncontiguous_legacy.pth"] {
        let err = Checkpoint::open(fixture(file)).err().unwrap();
        let msg = err.to_string();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains(file) && msg.contains("w: non-contiguous tensors are not supported"),
            "{msg}"
        );
    }
}
