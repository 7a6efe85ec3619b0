//! `vidpose bench run`: a real run's stage report (throughput, latency, where each stage's
//! time went, batch sizes, queues, peak memory), its bottleneck, the change against an earlier
//! report, and a timeline of each stage's busy time as SVG.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::pipeline::metrics::StageSummary;
use crate::pipeline::RunReport;

/// One stage's row of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    /// The stage's name (`decode`, `detect`, `pose`, `track`, `sink`, ...).
    pub stage: String,
    /// Frames through the stage.
    pub frames: u64,
    /// Frames per second of the stage's busy time: what it could do alone.
    pub frames_per_s_busy: f64,
    /// Frames per second of the whole run's wall time.
    pub frames_per_s: f64,
    /// Median per-frame latency, milliseconds.
    pub p50_ms: f64,
    /// 95th-percentile per-frame latency, milliseconds.
    pub p95_ms: f64,
    /// Share of the stage's life spent working.
    pub busy: f64,
    /// Share spent waiting for input (starved).
    pub starved: f64,
    /// Share spent blocked on a full output channel (or, for the source, on frame permits).
    pub blocked: f64,
    /// Work items per model call (crops for the pose model, frames for the detector); 0 for
    /// stages that do not batch.
    pub mean_batch: f64,
    /// Mean number of messages waiting in the stage's input channel.
    pub mean_queue: f64,
}

/// The report of one `vidpose bench run`, also its JSON form (`--json`, `--compare`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Frames decoded.
    pub frames: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// End-to-end frames per second.
    pub frames_per_s: f64,
    /// The process's peak resident memory, MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
    /// The stage with the most busy time.
    pub bottleneck: Option<String>,
    /// End-to-end frames/s over what the bottleneck does alone (1 = the pipeline keeps its
    /// slowest stage busy all the time).
    pub of_bottleneck: Option<f64>,
    /// One row per stage, in chain order.
    pub stages: Vec<StageRow>,
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

impl BenchReport {
    /// The report of `run`, with the process's peak memory.
    pub fn from_run(run: &RunReport, peak_rss_mib: Option<f64>) -> Self {
        let frames = run.stages.first().map_or(0, |s| s.items);
        let stages: Vec<StageRow> = run
            .stages
            .iter()
            .map(|s| {
                let life = s.busy_s + s.wait_input_s + s.blocked_output_s;
                StageRow {
                    stage: s.stage.clone(),
                    frames: s.items,
                    frames_per_s_busy: share(s.items as f64, s.busy_s),
                    frames_per_s: share(s.items as f64, run.seconds),
                    p50_ms: s.latency_p50_ms,
                    p95_ms: s.latency_p95_ms,
                    busy: share(s.busy_s, life),
                    starved: share(s.wait_input_s, life),
                    blocked: share(s.blocked_output_s, life),
                    mean_batch: s.mean_batch,
                    mean_queue: s.mean_queue,
                }
            })
            .collect();
        let slowest = run
            .stages
            .iter()
            .filter(|s| s.busy_s > 0.0)
            .max_by(|a, b| a.busy_s.total_cmp(&b.busy_s));
        let frames_per_s = share(frames as f64, run.seconds);
        Self {
            frames,
            seconds: run.seconds,
            frames_per_s,
            peak_rss_mib,
            bottleneck: slowest.map(|s| s.stage.clone()),
            of_bottleneck: slowest.map(|s| share(frames_per_s, share(frames as f64, s.busy_s))),
            stages,
        }
    }

    /// The report as a text table with a summary line.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<8} {:>7} {:>10} {:>10} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>6}\n",
            "stage",
            "frames",
            "alone f/s",
            "run f/s",
            "p50 ms",
            "p95 ms",
            "busy",
            "starved",
            "blocked",
            "batch",
            "queue"
        );
        for s in &self.stages {
            let batch = if s.mean_batch > 0.0 {
                format!("{:.1}", s.mean_batch)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{:<8} {:>7} {:>10.2} {:>10.2} {:>8.2} {:>8.2} {:>5.0}% {:>7.0}% {:>7.0}% {:>6} {:>6.2}",
                s.stage,
                s.frames,
                s.frames_per_s_busy,
                s.frames_per_s,
                s.p50_ms,
                s.p95_ms,
                100.0 * s.busy,
                100.0 * s.starved,
                100.0 * s.blocked,
                batch,
                s.mean_queue
            );
        }
        let _ = write!(
            out,
            "{} frames in {:.2} s: {:.2} frames/s",
            self.frames, self.seconds, self.frames_per_s
        );
        if let (Some(stage), Some(ratio)) = (&self.bottleneck, self.of_bottleneck) {
            let _ = write!(
                out,
                "; bottleneck {stage}, the run reaches {ratio:.2}x of what it does alone"
            );
        }
        if let Some(rss) = self.peak_rss_mib {
            let _ = write!(out, "; peak RSS {rss:.0} MiB");
        }
        out.push('\n');
        out
    }

    /// What changed since `old`: end-to-end and per-stage throughput and latency, memory.
    pub fn compare(&self, old: &BenchReport) -> String {
        let change = |new: f64, old: f64| {
            if old > 0.0 {
                format!("{:+.1}%", 100.0 * (new - old) / old)
            } else {
                "new".into()
            }
        };
        let mut out = format!(
            "end to end: {:.2} -> {:.2} frames/s ({})\n",
            old.frames_per_s,
            self.frames_per_s,
            change(self.frames_per_s, old.frames_per_s)
        );
        for s in &self.stages {
            match old.stages.iter().find(|o| o.stage == s.stage) {
                Some(o) => {
                    let _ = writeln!(
                        out,
                        "{:<8} alone {:.2} -> {:.2} frames/s ({}), p50 {:.2} -> {:.2} ms ({})",
                        s.stage,
                        o.frames_per_s_busy,
                        s.frames_per_s_busy,
                        change(s.frames_per_s_busy, o.frames_per_s_busy),
                        o.p50_ms,
                        s.p50_ms,
                        change(s.p50_ms, o.p50_ms)
                    );
                }
                None => {
                    let _ = writeln!(out, "{:<8} not in the earlier report", s.stage);
                }
            }
        }
        for o in &old.stages {
            if !self.stages.iter().any(|s| s.stage == o.stage) {
                let _ = writeln!(out, "{:<8} gone since the earlier report", o.stage);
            }
        }
        if let (Some(new), Some(old)) = (self.peak_rss_mib, old.peak_rss_mib) {
            let _ = writeln!(
                out,
                "peak RSS {old:.0} -> {new:.0} MiB ({})",
                change(new, old)
            );
        }
        out
    }
}

/// An SVG timeline: one row per stage, a bar wherever the stage was working.
pub fn timeline_svg(stages: &[StageSummary]) -> String {
    const LEFT: f64 = 90.0;
    const WIDTH: f64 = 900.0;
    const ROW: f64 = 28.0;
    const TOP: f64 = 24.0;
    let start = stages
        .iter()
        .flat_map(|s| s.busy_spans.first())
        .map(|s| s[0] as f64)
        .fold(f64::INFINITY, f64::min);
    let end = stages
        .iter()
        .flat_map(|s| s.busy_spans.last())
        .map(|s| s[1] as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let (start, length) = if start.is_finite() && end > start {
        (start, end - start)
    } else {
        (0.0, 1.0)
    };
    let x = |t: f64| LEFT + WIDTH * (t - start) / length;
    let height = TOP + ROW * stages.len() as f64 + 30.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        LEFT + WIDTH + 20.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"15\">busy time per stage (bars), {length:.2} s in all</text>"
    );
    for (row, stage) in stages.iter().enumerate() {
        let y = TOP + ROW * row as f64;
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{:.1}\">{}</text>\n<rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{WIDTH}\" height=\"{:.1}\" fill=\"#eeeeee\"/>",
            y + ROW * 0.6,
            stage.stage,
            ROW - 6.0
        );
        for span in &stage.busy_spans {
            let (a, b) = (x(span[0] as f64), x(span[1] as f64));
            let _ = writeln!(
                svg,
                "<rect x=\"{a:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"#3b6fb6\"/>",
                (b - a).max(0.3),
                ROW - 6.0
            );
        }
    }
    let axis = TOP + ROW * stages.len() as f64 + 14.0;
    for i in 0..=4 {
        let t = length * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{axis:.1}\" text-anchor=\"middle\">{t:.1} s</text>",
            x(start + t)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The process's peak resident memory in MiB (`VmHWM`, Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(stage: &str, items: u64, busy: f64, wait: f64) -> StageSummary {
        StageSummary {
            stage: stage.into(),
            items,
            batches: items / 2,
            busy_s: busy,
            wait_input_s: wait,
            blocked_output_s: 0.0,
            items_per_s: items as f64 / busy,
            latency_p50_ms: 10.0,
            latency_p95_ms: 20.0,
            mean_batch: 0.0,
            mean_queue: 0.5,
            busy_spans: vec![[0.0, busy as f32]],
        }
    }

    fn run() -> RunReport {
        RunReport {
            stages: vec![
                summary("decode", 100, 1.0, 0.0),
                summary("pose", 100, 8.0, 2.0),
                summary("sink", 100, 0.5, 9.5),
            ],
            seconds: 10.0,
            ..RunReport::default()
        }
    }

    #[test]
    fn names_the_bottleneck_and_the_shares() {
        let r = BenchReport::from_run(&run(), Some(100.0));
        assert_eq!(r.frames, 100);
        assert_eq!(r.bottleneck.as_deref(), Some("pose"));
        // 10 frames/s end to end, 12.5 alone.
        assert!((r.of_bottleneck.unwrap() - 0.8).abs() < 1e-9);
        let pose = &r.stages[1];
        assert!((pose.busy - 0.8).abs() < 1e-9 && (pose.starved - 0.2).abs() < 1e-9);
        let table = r.table();
        assert!(table.contains("bottleneck pose"), "{table}");
        assert!(table.contains("peak RSS 100 MiB"), "{table}");
        let json: BenchReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(json, r);
    }

    #[test]
    fn compare_says_what_changed() {
        let old = BenchReport::from_run(&run(), Some(100.0));
        let mut faster = run();
        faster.stages[1].busy_s = 4.0;
        faster.stages.push(summary("track", 100, 0.1, 9.9));
        faster.seconds = 5.0;
        let new = BenchReport::from_run(&faster, Some(110.0));
        let text = new.compare(&old);
        assert!(text.contains("10.00 -> 20.00 frames/s (+100.0%)"), "{text}");
        assert!(
            text.contains("pose     alone 12.50 -> 25.00 frames/s (+100.0%)"),
            "{text}"
        );
        assert!(
            text.contains("track    not in the earlier report"),
            "{text}"
        );
        assert!(text.contains("peak RSS 100 -> 110 MiB (+10.0%)"), "{text}");
    }

    #[test]
    fn timeline_has_a_row_per_stage_and_a_bar_per_span() {
        let svg = timeline_svg(&run().stages);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        for stage in ["decode", "pose", "sink"] {
            assert!(svg.contains(&format!(">{stage}</text>")), "{svg}");
        }
        // 3 row backgrounds and 3 busy bars.
        assert_eq!(svg.matches("<rect").count(), 6);
    }
}
