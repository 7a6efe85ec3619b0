//! The detector on inputs it cannot or should not handle: errors that say what is wrong, or
//! the documented behaviour, never a panic.

use candle_core::Device;
use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig, DetectError};
use vidpose::image::RgbImage;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cascade");

fn narrow_r() -> CascadeRcnnConfig {
    CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 1, 4, 8, 16, (240, 160))
}

fn model() -> CascadeRcnn {
    CascadeRcnn::load(
        format!("{FIX}/narrow_r.safetensors"),
        &narrow_r(),
        &Device::Cpu,
    )
    .unwrap()
}

fn noise(width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    let mut s = 12345u32;
    for v in img.data.iter_mut() {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *v = (s >> 24) as u8;
    }
    img
}

#[test]
fn checkpoint_of_another_architecture_names_the_key() {
    // a ResNet checkpoint for a ResNeXt model: the grouped 3x3 weights have another shape
    let cfg = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 4, 2, 8, 16, (240, 160));
    let err =
        CascadeRcnn::load(format!("{FIX}/narrow_r.safetensors"), &cfg, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("narrow_r.safetensors") && msg.contains("backbone.layer1.0."),
        "{msg}"
    );
    // a narrow checkpoint for the published X101 model
    let err = CascadeRcnn::load(
        format!("{FIX}/narrow_x.safetensors"),
        &CascadeRcnnConfig::x101(),
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(err.to_string().contains("backbone.conv1.weight"), "{err}");
    // deeper stages than the file has: a missing key
    let cfg = CascadeRcnnConfig::narrow([1, 2, 2, 1], 4, 1, 4, 8, 16, (240, 160));
    let err =
        CascadeRcnn::load(format!("{FIX}/narrow_r.safetensors"), &cfg, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("backbone.layer2.1."), "{err}");
    // shallower: tensors left over
    let cfg = CascadeRcnnConfig::narrow([1, 1, 1, 1], 4, 1, 4, 8, 16, (240, 160));
    let err =
        CascadeRcnn::load(format!("{FIX}/narrow_r.safetensors"), &cfg, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, DetectError::Checkpoint(_)) && err.to_string().contains("layer3.1"),
        "{err}"
    );
}

#[test]
fn truncated_and_missing_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(format!("{FIX}/narrow_r.safetensors")).unwrap();
    for (name, len) in [
        ("half.safetensors", bytes.len() / 2),
        ("header.safetensors", 100),
        ("empty.pth", 0),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = CascadeRcnn::load(&path, &narrow_r(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
    let err =
        CascadeRcnn::load(dir.path().join("absent.pth"), &narrow_r(), &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("absent.pth"), "{err}");
}

#[test]
fn small_images_are_enlarged() {
    // documented: any image of at least 1x1 is resized up to the test scale and detected on
    let m = model();
    for (w, h) in [(1, 1), (20, 12), (31, 31), (3, 40)] {
        let trace = m.detect_with_trace(&noise(w, h)).unwrap();
        let (nh, nw) = trace.meta.img_shape;
        let (long, short) = (nw.max(nh), nw.min(nh));
        assert!(long == 240 || short == 160, "{w}x{h} -> {nw}x{nh}");
        for d in &trace.detections {
            assert!(
                d.bbox.is_finite() && d.bbox.x2 <= w as f32 + 1e-3 && d.bbox.y2 <= h as f32 + 1e-3
            );
        }
    }
}

#[test]
fn very_wide_frames() {
    let m = model();
    // 8000x450 fits as 240x14 (padded to 256x32)
    let trace = m.detect_with_trace(&noise(8000, 450)).unwrap();
    assert_eq!(trace.meta.img_shape, (14, 240));
    assert_eq!(trace.meta.pad_shape, (32, 256));
    // 8000x8 would have no rows left
    let err = m.detect(&noise(8000, 8)).unwrap_err();
    assert!(matches!(err, DetectError::Degenerate { .. }), "{err}");
}

#[test]
fn malformed_images_are_errors() {
    let m = model();
    let err = m.detect(&RgbImage::new(0, 10)).unwrap_err();
    assert!(matches!(err, DetectError::BadImage { .. }), "{err}");
    let mut img = noise(10, 10);
    img.data.pop();
    assert!(matches!(m.detect(&img), Err(DetectError::BadImage { .. })));
    let huge = RgbImage {
        width: 1 << 14,
        height: 1 << 14,
        data: Vec::new(),
    };
    assert!(matches!(
        m.detect(&huge),
        Err(DetectError::BadImage { .. }) | Err(DetectError::TooLarge { .. })
    ));
}

#[test]
fn a_bad_image_in_a_batch_fails_alone() {
    let m = model();
    let good = noise(64, 48);
    let wide = noise(8000, 8);
    let empty = RgbImage::new(0, 10);
    let results = m.detect_batch(&[&good, &wide, &empty, &good]);
    assert_eq!(results.len(), 4);
    assert!(matches!(results[1], Err(DetectError::Degenerate { .. })));
    assert!(matches!(results[2], Err(DetectError::BadImage { .. })));
    // the good images are detected as they are alone (same size: no extra padding), up to
    // float32 rounding (a batch's GEMMs are blocked differently)
    let alone = m.detect(&good).unwrap();
    for i in [0, 3] {
        let got = results[i].as_ref().unwrap();
        assert_eq!(got.len(), alone.len(), "image {i}");
        for (g, a) in got.iter().zip(&alone) {
            let coords =
                |d: &vidpose::detect::Detection| [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2];
            let dc = coords(g)
                .iter()
                .zip(coords(a))
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                g.label == a.label && dc < 1e-3 && (g.score - a.score).abs() < 1e-5,
                "image {i}: {g:?} alone {a:?}"
            );
        }
    }
    assert!(m.detect_batch(&[]).is_empty());
}

#[test]
fn a_frame_already_on_the_device_is_read_from_there_and_a_wrong_one_is_not() {
    let m = model();
    let img = noise(64, 48);
    // the CPU keeps no copy: there is no transfer to save
    assert!(m.upload(&img).is_none());
    let alone = m.detect_batch(&[&img]);
    let up = vidpose::nn::transfer::upload_frame(&img, &Device::Cpu).unwrap();
    // another frame's copy (other size) is not used: the image itself is read instead
    let other = vidpose::nn::transfer::upload_frame(&noise(32, 48), &Device::Cpu).unwrap();
    let black = vidpose::nn::transfer::upload_frame(&RgbImage::new(64, 48), &Device::Cpu);
    let with_copy = m.detect_batch_uploaded(&[&img], &[Some(&up)]);
    let with_other = m.detect_batch_uploaded(&[&img], &[Some(&other)]);
    let with_black = m.detect_batch_uploaded(&[&img], &[Some(&black.unwrap())]);
    let boxes = |r: &[Result<Vec<vidpose::detect::Detection>, DetectError>]| {
        r[0].as_ref()
            .unwrap()
            .iter()
            .map(|d| (d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2, d.score))
            .collect::<Vec<_>>()
    };
    assert_eq!(boxes(&with_copy), boxes(&alone));
    assert_eq!(boxes(&with_other), boxes(&alone));
    // a copy of the right size is trusted: the detector reads it, not the image
    assert_ne!(boxes(&with_black), boxes(&alone));
}
