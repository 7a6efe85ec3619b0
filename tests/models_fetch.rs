//! Model cards and checkpoint download against a local HTTP server started by the test (the
//! real model URLs are not reachable here): a good download, a hash mismatch, a 404 and a
//! connection cut mid-body; none may leave a file under the final name or a temporary behind.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use vidpose::models::ModelTask;

use sha2::{Digest, Sha256};
use vidpose::models::{self, ModelError, Verified};

fn body() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Serves `/good.bin`, `/short.bin` (announces more bytes than it sends) and 404 otherwise.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let head = request.starts_with("HEAD");
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let data = body();
            let (status, announced, sent): (&str, usize, &[u8]) = match path {
                "/good.bin" => ("200 OK", data.len(), &data),
                "/short.bin" => ("200 OK", data.len(), &data[..1000]),
                _ => ("404 Not Found", 0, &[]),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
            );
            if !head {
                let _ = stream.write_all(sent);
            }
        }
    });
    format!("http://{addr}")
}

fn only_final_or_nothing(dir: &Path, expect_final: bool) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".partial-")), "{names:?}");
    assert_eq!(
        names.iter().any(|n| n == "model.pth"),
        expect_final,
        "{names:?}"
    );
}

#[test]
fn download_checks_hash_and_never_leaves_partial_files() {
    let base = serve();
    let good = sha(&body());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.pth");

    let err = models::download(&format!("{base}/good.bin"), &dest, "00000000", false).unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
    only_final_or_nothing(dir.path(), false);

    let err =
        models::download(&format!("{base}/missing.bin"), &dest, &good[..8], false).unwrap_err();
    assert!(matches!(err, ModelError::Download { .. }), "{err}");
    only_final_or_nothing(dir.path(), false);

    let err = models::download(&format!("{base}/short.bin"), &dest, &good[..8], false).unwrap_err();
    assert!(matches!(err, ModelError::Download { .. }), "{err}");
    only_final_or_nothing(dir.path(), false);

    models::download(&format!("{base}/good.bin"), &dest, &good[..8], true).unwrap();
    only_final_or_nothing(dir.path(), true);
    assert_eq!(std::fs::read(&dest).unwrap(), body());
}

#[test]
fn cards_list_fetch_and_verify() {
    let repo_models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let cards = models::load_cards(&repo_models).unwrap();
    let names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cascade_rcnn_r50_fpn_1x_coco",
            "cascade_rcnn_x101_64x4d_fpn_20e_coco",
            "hrnet_w32_256x192",
            "hrnet_w32_384x288",
            "hrnet_w48_256x192",
            "hrnet_w48_384x288"
        ]
    );
    for c in &cards {
        assert!(
            c.file.contains(&c.sha256_prefix) && c.url.ends_with(&c.file),
            "{c:?}"
        );
        match c.task {
            ModelTask::Pose => {
                assert_eq!(Some(c.pose_config().unwrap().input_size), c.input_size)
            }
            ModelTask::Detect => {
                let cfg = c.detector_config().unwrap();
                assert!(c.pose_config().is_none());
                assert_eq!(cfg.preprocess.scale, (1333, 800));
                assert_eq!(c.image_scale, Some((1333, 800)));
            }
        }
    }
    assert!(models::find(&cards, "nope")
        .unwrap_err()
        .to_string()
        .contains("hrnet_w32_256x192"));

    // a card pointing at the local server, fetched and verified
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let mut card = cards[0].clone();
    card.url = format!("{base}/good.bin");
    card.file = "model.pth".into();
    card.sha256_prefix = sha(&body())[..8].to_string();
    assert_eq!(
        models::verify(&card, dir.path()).unwrap(),
        Verified::Missing
    );
    let path = models::fetch(&card, dir.path(), false).unwrap();
    assert!(matches!(
        models::verify(&card, dir.path()).unwrap(),
        Verified::Ok { .. }
    ));
    // a damaged file is reported, and fetch replaces it
    std::fs::write(&path, b"damaged").unwrap();
    assert!(matches!(
        models::verify(&card, dir.path()).unwrap(),
        Verified::Mismatch { .. }
    ));
    models::fetch(&card, dir.path(), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());

    // file:// sources work too
    let src = dir.path().join("src.bin");
    std::fs::write(&src, body()).unwrap();
    card.url = format!("file://{}", src.display());
    std::fs::remove_file(&path).unwrap();
    models::fetch(&card, dir.path(), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());
}

#[test]
fn built_in_cards_are_the_repository_cards_and_the_configurable_models() {
    let repo_models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    assert_eq!(
        models::builtin_cards(),
        models::load_cards(&repo_models).unwrap()
    );
    let cards = models::builtin_cards();
    let names = |task: ModelTask| -> Vec<&str> {
        cards
            .iter()
            .filter(|c| c.task == task)
            .map(|c| c.name.as_str())
            .collect()
    };
    // The configuration accepts exactly the cards' models.
    assert_eq!(
        names(ModelTask::Pose),
        vidpose::models::card_names(ModelTask::Pose)
    );
    assert_eq!(
        names(ModelTask::Detect),
        vidpose::models::card_names(ModelTask::Detect)
    );
    for name in names(ModelTask::Pose) {
        vidpose::config::Config::load(None, &[format!("pose.model={name}")]).unwrap();
    }
    let e = vidpose::config::Config::load(None, &["pose.model=hrnet_w64".into()])
        .unwrap_err()
        .to_string();
    assert!(names(ModelTask::Pose).iter().all(|n| e.contains(n)), "{e}");
    assert_eq!(
        names(ModelTask::Pose).len() + names(ModelTask::Detect).len(),
        cards.len()
    );
}

#[test]
fn models_list_shows_every_card_and_whether_it_is_here() {
    let dir = tempfile::tempdir().unwrap();
    let x101 = models::find(
        &models::builtin_cards(),
        "cascade_rcnn_x101_64x4d_fpn_20e_coco",
    )
    .unwrap()
    .file
    .clone();
    std::fs::write(dir.path().join(&x101), b"placeholder").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidpose"))
        .args(["models", "list", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(
        row("cascade_rcnn_x101_64x4d_fpn_20e_coco")[1..4],
        ["detect", "1333x800", "yes"]
    );
    assert_eq!(
        row("cascade_rcnn_r50_fpn_1x_coco")[1..4],
        ["detect", "1333x800", "no"]
    );
    assert_eq!(row("hrnet_w32_256x192")[1..4], ["pose", "256x192", "no"]);
    assert_eq!(text.lines().count(), 1 + models::builtin_cards().len());
}

#[test]
fn a_missing_checkpoint_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let cards = models::builtin_cards();
    let card = models::find(&cards, "cascade_rcnn_x101_64x4d_fpn_20e_coco").unwrap();
    let err = card
        .checkpoint(None, dir.path(), "detector")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&card.path_in(dir.path()).display().to_string())
            && err.contains("vidpose models fetch cascade_rcnn_x101_64x4d_fpn_20e_coco")
            && err.contains("detector.checkpoint"),
        "{err}"
    );
    let given = dir.path().join("mine.pth");
    let err = card
        .checkpoint(Some(&given), dir.path(), "detector")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mine.pth"), "{err}");
    std::fs::write(&given, b"x").unwrap();
    assert_eq!(
        card.checkpoint(Some(&given), dir.path(), "detector")
            .unwrap(),
        given
    );

    // the pipeline's loaders go through it
    let config = vidpose::config::Config::load(
        None,
        &[
            "detector.kind=cascade_rcnn".into(),
            format!("models_dir='{}'", dir.path().display()),
        ],
    )
    .unwrap();
    use vidpose::models::load::{self, ModelSource, PoseSettings};
    let err = load::detector(ModelSource {
        card: &config.detector.model,
        checkpoint: config.detector.checkpoint.as_deref(),
        models_dir: &config.models_dir,
        device: config.device,
        dtype: config.detector.dtype,
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("detector checkpoint"), "{err}");
    let err = load::pose_model(
        ModelSource {
            card: config.pose.model.as_deref().unwrap(),
            checkpoint: config.pose.checkpoint.as_deref(),
            models_dir: &config.models_dir,
            device: config.device,
            dtype: config.pose.dtype,
        },
        PoseSettings {
            flip_test: config.pose.flip_test,
            decode: config.pose.decode,
            batch_size: config.pose.batch_size,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("pose checkpoint") && err.contains("pose.checkpoint"),
        "{err}"
    );
}
