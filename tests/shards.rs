//! A folder run as N shards (through the Slurm job-array script, as a scheduler would start
//! it) gives, once merged, exactly the outputs of a single run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with("run"))
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn shards_merged_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("videos");
    let boxes = dir.path().join("boxes");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&boxes).unwrap();
    for (i, name) in ["alpha", "bravo", "charlie", "delta", "echo"]
        .iter()
        .enumerate()
    {
        make_mp4(&input.join(format!("{name}.mp4")), 2 + i, 64, 48, 25.0);
        write_video_boxes(
            &boxes.join(format!("{name}.json")),
            name,
            2 + i,
            |f| [1.0 + f as f64, 2.0, 10.0, 20.0],
            Some(i as i64),
        );
    }
    let settings = [
        "--set".to_string(),
        format!("detector.boxes={}", boxes.display()),
        "--set".into(),
        "pose.model=none".into(),
        "--set".into(),
        "tracker.kind=given".into(),
    ];
    let single = dir.path().join("single");
    let out = vidpose()
        .args([
            "run",
            "-i",
            input.to_str().unwrap(),
            "-o",
            single.to_str().unwrap(),
        ])
        .args(&settings)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sharded = dir.path().join("sharded");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm_array.sh");
    for task in 0..3 {
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args([input.to_str().unwrap(), sharded.to_str().unwrap()])
            .args(&settings)
            .env("VIDPOSE", env!("CARGO_BIN_EXE_vidpose"))
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "task {task}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (a, b) = (outputs(&single), outputs(&sharded));
    assert_eq!(a.len(), 5);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a == b, "sharded outputs differ from the single run's");
    for task in 0..3 {
        assert!(sharded.join(format!("run.shard-{task}-of-3.json")).exists());
    }
}

#[test]
fn the_kubernetes_job_runs_one_shard_per_index() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-indexed-job.yaml"),
    )
    .unwrap();
    let job: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().unwrap();
    let container = &spec["template"]["spec"]["containers"][0];
    let shards = container["env"][0]["value"].as_str().unwrap();
    assert_eq!(shards.parse::<u64>().unwrap(), completions);
    let args = container["args"][0].as_str().unwrap();
    assert!(
        args.contains("--shard \"${JOB_COMPLETION_INDEX}/${SHARDS}\""),
        "{args}"
    );
}
