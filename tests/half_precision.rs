//! `pose.dtype` / `detector.dtype`: what f16 costs against f32, measured on the committed
//! narrow fixtures on the CPU (candle's generic kernels; candle's CPU matrix product has no
//! bf16, so bf16 is measured on a GPU only, by `scripts/device_check.sh`). Run with
//! `--nocapture` to see the numbers; the bounds only catch a broken half-precision path.

mod common;

use candle_core::{DType, Device};
use vidpose::bench::parity::{compare_detector, compare_pose};
use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::pose::PoseOptions;

#[test]
fn pose_in_half_precision() {
    let dir = common::hrnet_fixture_dir();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let frame = vidpose::image::read_still(&dir.join("frame.png"))
        .unwrap()
        .unwrap()
        .image;
    let boxes: Vec<BBox> = json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let b: Vec<f32> = i["bbox_xyxy"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            BBox::new(b[0], b[1], b[2], b[3])
        })
        .collect();
    let items: Vec<(&RgbImage, BBox)> = boxes.iter().map(|b| (&frame, *b)).collect();
    let reference = common::narrow_estimator(PoseOptions::default());
    let candidate = common::narrow_estimator(PoseOptions {
        dtype: DType::F16,
        ..Default::default()
    });
    let d = compare_pose(&reference, &candidate, &items).unwrap();
    println!("pose f16 vs f32: {d:?}");
    // measured: heatmaps 8.7e-3 of the peak; keypoints move by up to 3.5 px where the random
    // model's heatmaps have near-equal maxima
    assert!(d.heatmap_rel < 0.02, "{d:?}");
}

#[test]
fn detector_in_half_precision() {
    let fix = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cascade");
    let frame =
        candle_core::safetensors::load(format!("{fix}/frame_crop.safetensors"), &Device::Cpu)
            .unwrap();
    let t = &frame["image_rgb"];
    let (h, w, _) = t.dims3().unwrap();
    let img = RgbImage {
        width: w as u32,
        height: h as u32,
        data: t.flatten_all().unwrap().to_vec1::<u8>().unwrap(),
    };
    let cfg = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 4, 2, 8, 16, (240, 160));
    let ckpt = format!("{fix}/narrow_x.safetensors");
    let reference = CascadeRcnn::load(&ckpt, &cfg, &Device::Cpu).unwrap();
    let candidate = CascadeRcnn::load_as(&ckpt, &cfg, &Device::Cpu, DType::F16).unwrap();
    let d = compare_detector(&reference, &candidate, &img).unwrap();
    println!("detector f16 vs f32: {d:?}");
    // measured: FPN 3.5e-3 of each level's peak; 58 of 100 detections still match at IoU > 0.99
    // (the narrow random model's scores are close together)
    assert!(d.fpn_rel < 0.02, "{d:?}");
}
