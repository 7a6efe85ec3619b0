//! `vidpose eval` prints poseval's tables and writes the JSON report; bad input is refused.

mod common;

use std::path::Path;

#[test]
fn prints_the_same_tables_as_poseval() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/mixed");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("metrics.json");
    let out = common::vidpose()
        .args(["eval", "--gt"])
        .arg(case.join("gt"))
        .arg("--pred")
        .arg(case.join("pred"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(expected["ap_table"].as_str().unwrap()),
        "{stdout}"
    );
    assert!(
        stdout.contains(expected["mot_table"].as_str().unwrap()),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report.get("ap").is_some(), "{report}");
}

#[test]
fn missing_prediction_file_is_named() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/mixed");
    let empty = tempfile::tempdir().unwrap();
    let out = common::vidpose()
        .args(["eval", "--gt"])
        .arg(case.join("gt"))
        .arg("--pred")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&empty.path().display().to_string()),
        "{stderr}"
    );
}
