//! NMS, RoIAlign and the score sort against mmcv's / PyTorch's CPU kernels
//! (fixtures: `scripts/make_cascade_fixtures.py ops`).

use candle_core::{Device, Tensor};
use serde::Deserialize;
use vidpose::detect::ops::{self, nms::argsort_desc, RoiAlign};
use vidpose::geometry::BBox;

#[derive(Deserialize)]
struct Fixture {
    sort_desc: Vec<SortCase>,
    nms: Vec<NmsCase>,
    roi_align: RoiAlignCases,
}

#[derive(Deserialize)]
struct SortCase {
    scores: Vec<f32>,
    order: Vec<usize>,
}

#[derive(Deserialize)]
struct NmsCase {
    name: String,
    boxes: Vec<[f32; 4]>,
    scores: Vec<f32>,
    iou_threshold: f32,
    keep: Vec<usize>,
}

#[derive(Deserialize)]
struct RoiAlignCases {
    features_shape: [usize; 4],
    features: Vec<f32>,
    rois: Vec<[f32; 5]>,
    cases: Vec<RoiAlignCase>,
}

#[derive(Deserialize)]
struct RoiAlignCase {
    spatial_scale: f32,
    sampling_ratio: usize,
    output: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cascade/ops.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn sort_orders_ties_like_torch() {
    for case in fixture().sort_desc {
        assert_eq!(
            argsort_desc(&case.scores),
            case.order,
            "n = {}",
            case.scores.len()
        );
    }
}

#[test]
fn nms_matches_mmcv() {
    for case in fixture().nms {
        let boxes: Vec<BBox> = case
            .boxes
            .iter()
            .map(|b| BBox::new(b[0], b[1], b[2], b[3]))
            .collect();
        let keep = ops::nms(&boxes, &case.scores, case.iou_threshold);
        assert_eq!(keep, case.keep, "case {}", case.name);
        // the same through the candle op
        let rows: Vec<f32> = case
            .boxes
            .iter()
            .zip(&case.scores)
            .flat_map(|(b, s)| [b[0], b[1], b[2], b[3], *s])
            .collect();
        let dets = Tensor::from_vec(rows, (case.boxes.len(), 5), &Device::Cpu).unwrap();
        let keep = ops::nms::nms_tensor(&dets, case.iou_threshold)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap();
        let want: Vec<u32> = case.keep.iter().map(|&i| i as u32).collect();
        assert_eq!(keep, want, "case {} (op)", case.name);
    }
}

#[test]
fn roi_align_matches_mmcv() {
    let fx = fixture().roi_align;
    let dev = Device::Cpu;
    let feats = Tensor::from_vec(fx.features.clone(), fx.features_shape.to_vec(), &dev).unwrap();
    let rois: Vec<f32> = fx.rois.iter().flatten().copied().collect();
    let rois = Tensor::from_vec(rois, (fx.rois.len(), 5), &dev).unwrap();
    for case in &fx.cases {
        let op = RoiAlign {
            output_size: 7,
            spatial_scale: case.spatial_scale,
            sampling_ratio: case.sampling_ratio,
            aligned: true,
        };
        let got = ops::roi_align(&feats, &rois, op)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got.len(), case.output.len());
        let err = got
            .iter()
            .zip(&case.output)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            err <= 1e-6,
            "scale {} sampling {}: max |diff| {err}",
            case.spatial_scale,
            case.sampling_ratio
        );
    }
}

#[test]
fn roi_align_rejects_inverted_boxes() {
    let dev = Device::Cpu;
    let feats = Tensor::zeros((1, 2, 4, 4), candle_core::DType::F32, &dev).unwrap();
    let rois = Tensor::new(&[[0f32, 3.0, 3.0, 1.0, 1.0]], &dev).unwrap();
    let err = ops::roi_align(&feats, &rois, RoiAlign::mmdet(4)).unwrap_err();
    assert!(err.to_string().contains("negative size"), "{err}");
    let rois = Tensor::new(&[[1f32, 0.0, 0.0, 1.0, 1.0]], &dev).unwrap();
    assert!(ops::roi_align(&feats, &rois, RoiAlign::mmdet(4)).is_err());
}
