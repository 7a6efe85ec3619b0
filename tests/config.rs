//! pipeline.yaml: the shipped file, overrides, and every kind of bad input.

use std::path::{Path, PathBuf};

use vidpose::config::{Config, ConfigError, DetectorKind};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.yaml")
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("pipeline.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn shipped_file_states_the_defaults() {
    // The documented values must be the ones the program uses.
    let from_file = Config::load(Some(&shipped()), &[]).unwrap();
    assert_eq!(from_file, Config::default());
}

#[test]
fn overrides_keep_their_types() {
    let c = Config::load(
        Some(&shipped()),
        &[
            "pose.flip_test=false".into(),
            "pose.batch_size=32".into(),
            "detector.boxes=dets.json".into(),
            "detector.score_threshold=0.25".into(),
            "input.paths=[a.mp4, b]".into(),
        ],
    )
    .unwrap();
    assert!(!c.pose.flip_test);
    assert_eq!(c.pose.batch_size, 32);
    assert_eq!(c.detector.boxes, "dets.json");
    assert_eq!(c.detector.kind, DetectorKind::Auto);
    assert_eq!(c.detector.score_threshold, 0.25);
    assert_eq!(
        c.input.paths,
        vec![PathBuf::from("a.mp4"), PathBuf::from("b")]
    );
}

#[test]
fn dtypes_default_to_f32_and_parse() {
    use vidpose::nn::device::Precision;
    let c = Config::default();
    assert_eq!(
        (c.pose.dtype, c.detector.dtype),
        (Precision::F32, Precision::F32)
    );
    let c = Config::load(
        Some(&shipped()),
        &[
            "device=cuda:0".into(),
            "pose.dtype=bf16".into(),
            "detector.dtype=f16".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.pose.dtype, Precision::Bf16);
    assert_eq!(c.detector.dtype, Precision::F16);
    assert_eq!(c.pose.dtype.dtype(), candle_core::DType::BF16);
    assert_eq!(c.detector.dtype.to_string(), "f16");
}

#[test]
fn missing_file() {
    let e = Config::load(Some(Path::new("/nonexistent/pipeline.yaml")), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/pipeline.yaml"), "{e}");
}

#[test]
fn empty_file_means_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "");
    assert_eq!(Config::load(Some(&p), &[]).unwrap(), Config::default());
}

#[test]
fn malformed_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "pose:\n  flip_test: [true\n");
    let e = Config::load(Some(&p), &[]).unwrap_err().to_string();
    assert!(
        e.contains(&p.display().to_string()) && e.contains("malformed YAML"),
        "{e}"
    );
    assert!(e.contains("line"), "{e}");
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "pose:\n  flip_tset: true\n");
    let e = Config::load(Some(&p), &[]).unwrap_err().to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
    assert!(e.contains("pose") && e.contains("flip_tset"), "{e}");
    assert!(e.contains("flip_test"), "lists the expected keys: {e}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "pipeline:\n  channel_capacity: lots\n");
    let e = Config::load(Some(&p), &[]).unwrap_err().to_string();
    assert!(e.contains("pipeline.channel_capacity"), "{e}");
    assert!(e.contains("invalid type") || e.contains("expected"), "{e}");
}

#[test]
fn bad_values() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "detector:\n  score_threshold: 1.5\n",
            "detector.score_threshold",
        ),
        ("detector:\n  kind: yolo\n", "detector.kind"),
        ("device: tpu\n", "device"),
        ("pose:\n  model: hrnet_w64\n", "pose.model"),
        ("pose:\n  batch_size: 0\n", "pose.batch_size"),
        (
            "pipeline:\n  max_frames_in_flight: 0\n",
            "pipeline.max_frames_in_flight",
        ),
        ("input:\n  shard: 3/2\n", "input.shard"),
        ("input:\n  image_fps: -1\n", "input.image_fps"),
        ("render:\n  codec: vp9\n", "render.codec"),
        ("pose:\n  dtype: f64\n", "pose.dtype"),
        ("detector:\n  dtype: half\n", "detector.dtype"),
        ("pose:\n  dtype: bf16\n", "pose.dtype"),
    ] {
        let p = write(&dir, text);
        let e = Config::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
}

#[test]
fn resource_settings_are_bounded_by_what_can_work() {
    for (set, key) in [
        ("input.decode_threads=100000", "input.decode_threads"),
        ("pose.batch_timeout_ms=99999999999", "pose.batch_timeout_ms"),
        (
            "detector.batch_timeout_ms=600000",
            "detector.batch_timeout_ms",
        ),
        ("pose.batch_size=100000", "pose.batch_size"),
        (
            "pipeline.max_frames_in_flight=1000000",
            "pipeline.max_frames_in_flight",
        ),
        (
            "pipeline.channel_capacity=1000000",
            "pipeline.channel_capacity",
        ),
    ] {
        let e = Config::load(None, &[set.to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains("at most"), "{set}: {e}");
    }
    // A detector batch larger than the frames allowed in flight could never fill.
    let e = Config::load(
        None,
        &[
            "detector.kind=cascade_rcnn".to_string(),
            "detector.batch_size=8".to_string(),
            "pipeline.max_frames_in_flight=4".to_string(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("detector.batch_size") && e.contains("max_frames_in_flight"),
        "{e}"
    );
    // The bounds themselves are accepted.
    Config::load(
        None,
        &[
            "input.decode_threads=64".to_string(),
            "pose.batch_timeout_ms=60000".to_string(),
        ],
    )
    .unwrap();
}

#[test]
fn a_top_level_list_is_the_files_fault_not_sets() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "- a\n- b\n");
    let e = Config::load(Some(&p), &["pose.flip_test=false".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&p.display().to_string()) && e.contains("top level"),
        "{e}"
    );
    assert!(!e.contains("--set"), "{e}");
}

#[test]
fn bad_overrides() {
    let e = Config::load(None, &["pose.flip_test".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("KEY=VALUE"), "{e}");
    let e = Config::load(None, &["pose.nope=1".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    let e = Config::load(None, &["device.x=1".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("device"), "{e}");
    let e = Config::load(None, &["pose.batch_size=many".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("pose.batch_size") && e.contains("--set"), "{e}");
}

#[test]
fn detector_settings_are_checked() {
    let e = Config::load(None, &["detector.model=cascade_rcnn_r101".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("detector.model") && e.contains("cascade_rcnn_r50_fpn_1x_coco"),
        "{e}"
    );
    let e = Config::load(None, &["detector.batch_size=0".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("detector.batch_size"), "{e}");
    let c = Config::load(None, &["detector.batch_size=4".into()]).unwrap();
    assert_eq!(c.detector.batch_size, 4);
    // every detector the configuration accepts has a card that builds it
    let cards = vidpose::models::builtin_cards();
    for name in vidpose::models::card_names(vidpose::models::ModelTask::Detect) {
        let card = vidpose::models::find(&cards, &name).unwrap();
        assert!(card.detector_config().is_some(), "{name}");
        Config::load(None, &[format!("detector.model={name}")]).unwrap();
    }
}

#[test]
fn models_fetch_without_names_takes_what_the_configuration_runs() {
    let config = Config::load(None, &[]).unwrap();
    assert_eq!(
        config.models_needed(),
        ["hrnet_w32_256x192", "cascade_rcnn_x101_64x4d_fpn_20e_coco"]
    );
    let config = Config::load(
        None,
        &[
            "detector.kind=boxes".into(),
            "pose.model=hrnet_w48_384x288".into(),
        ],
    )
    .unwrap();
    assert_eq!(config.models_needed(), ["hrnet_w48_384x288"]);
}

#[test]
fn live_settings_are_read_and_checked() {
    let c = Config::load(
        None,
        &[
            "input.live=true".into(),
            "input.ffmpeg_options={rtsp_transport: tcp, rw_timeout: 5000000}".into(),
            "input.duration=2.5".into(),
            "output.jsonl='-'".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.input.live, vidpose::config::LiveMode::On);
    assert_eq!(c.input.ffmpeg_options["rw_timeout"], "5000000");
    assert_eq!(c.input.ffmpeg_options["rtsp_transport"], "tcp");
    assert_eq!(c.input.duration, Some(2.5));
    assert_eq!(
        Config::default().input.live,
        vidpose::config::LiveMode::Auto
    );
    for (set, key) in [
        ("input.live=maybe", "input.live"),
        ("input.timeout_s=0", "input.timeout_s"),
        ("input.duration=-1", "input.duration"),
        (
            "input.reconnect.max_backoff_s=-1",
            "input.reconnect.max_backoff_s",
        ),
        ("input.reconnect.tries=3", "input.reconnect"),
    ] {
        let e = Config::load(None, &[set.into()]).unwrap_err().to_string();
        assert!(e.contains(key), "{set}: {e}");
    }
}

#[test]
fn concurrent_inputs_are_read_and_checked() {
    use vidpose::config::Concurrency;
    assert_eq!(Config::default().input.concurrent, Concurrency::Auto);
    let c = Config::load(None, &["input.concurrent=3".into()]).unwrap();
    assert_eq!(c.input.concurrent, Concurrency::Inputs(3));
    let c = Config::load(None, &["input.concurrent=auto".into()]).unwrap();
    assert_eq!(c.input.concurrent, Concurrency::Auto);
    for bad in ["0", "-2", "many", "2.5", "[1]", "257"] {
        let e = Config::load(None, &[format!("input.concurrent={bad}")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("input.concurrent"), "{bad}: {e}");
        assert!(
            e.contains("auto") || e.contains("at most 256"),
            "{bad}: {e}"
        );
    }
}
