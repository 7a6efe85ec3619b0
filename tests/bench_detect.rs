//! `vidpose bench detect`: the timing helpers on the narrow detector, and the command's errors.

mod common;

use candle_core::Device;
use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};

#[test]
fn detector_timing_runs_every_batch() {
    let cfg = CascadeRcnnConfig::narrow([1, 1, 2, 1], 4, 1, 64, 8, 16, (240, 160));
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cascade/narrow_r.safetensors"
    );
    let model = CascadeRcnn::load(fixture, &cfg, &Device::Cpu).unwrap();
    let frame = vidpose::bench::synthetic_frame(96, 54);
    assert_eq!(frame.data.len(), 96 * 54 * 3);
    assert_eq!(
        frame,
        vidpose::bench::synthetic_frame(96, 54),
        "deterministic"
    );
    let times = vidpose::bench::detect_times(&model, &frame, 2, 1, 3).unwrap();
    assert_eq!(times.runs.len(), 3);
    // a frame the detector refuses is an error, not a time
    let degenerate = vidpose::bench::synthetic_frame(8000, 8);
    assert!(vidpose::bench::detect_times(&model, &degenerate, 1, 0, 1).is_err());
}

#[test]
fn bench_detect_errors_name_the_problem() {
    let cases: [(&[&str], &str); 3] = [
        (&["/nonexistent/cascade.pth"], "/nonexistent/cascade.pth"),
        (&["x.pth", "--model", "hrnet_w32_256x192"], "not a detector"),
        (
            &["x.pth", "--image", "/nonexistent/frame.jpg"],
            "/nonexistent/frame.jpg",
        ),
    ];
    for (args, expected) in cases {
        let out = common::vidpose()
            .args(["bench", "detect"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
