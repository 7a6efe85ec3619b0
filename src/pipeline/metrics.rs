//! Per-stage metrics: items, batches, busy time, time waiting for input, time blocked on
//! output, and per-item latency percentiles.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency samples kept per stage; beyond this, reservoir sampling keeps memory flat.
const MAX_SAMPLES: usize = 100_000;
/// Busy spans kept per stage for the timeline; beyond this, neighbouring spans are merged.
const MAX_SPANS: usize = 4_096;

/// The time origin of every stage's busy spans: the first stage metrics made in the process.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Counters one stage accumulates while it runs; [`StageMetrics::summary`] reports them.
#[derive(Debug, Clone, Default)]
pub struct StageMetrics {
    /// The stage's name (`decode`, `detect`, `pose`, ...).
    pub name: String,
    /// Frames received (frames produced, for the source).
    pub items: u64,
    /// Units of work run: forward passes for batched stages.
    pub batches: u64,
    /// Run time less `wait_input` and `blocked_output`.
    pub busy: Duration,
    /// Time spent waiting for the previous stage to send something.
    pub wait_input: Duration,
    /// Time spent waiting for the next stage to accept a message (a full channel), and for the
    /// source, for a frame permit.
    pub blocked_output: Duration,
    /// Work items run in batches (crops for the pose stage, frames for the detector); 0 for
    /// stages that do not batch.
    pub work_items: u64,
    /// Messages waiting in the input channel, summed over every receive.
    queued: u64,
    /// Receives counted in `queued`.
    receives: u64,
    /// When the stage worked, seconds since the process's first stage started.
    spans: Vec<[f32; 2]>,
    latencies_ms: Vec<f32>,
    seen: u64,
    rng: u64,
}

/// One stage's row in the end-of-run table and in `output.metrics_json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageSummary {
    /// The stage's name.
    pub stage: String,
    /// Frames handled, as [`StageMetrics::items`].
    pub items: u64,
    /// Units of work run, as [`StageMetrics::batches`].
    pub batches: u64,
    /// Busy time, seconds.
    pub busy_s: f64,
    /// Time waiting for input, seconds.
    pub wait_input_s: f64,
    /// Time blocked on a full output channel, seconds.
    pub blocked_output_s: f64,
    /// Throughput over busy time (`items / busy_s`); 0 when the stage was never busy.
    pub items_per_s: f64,
    /// Median per-frame latency, milliseconds; 0 without samples.
    pub latency_p50_ms: f64,
    /// 95th-percentile per-frame latency, milliseconds; 0 without samples.
    pub latency_p95_ms: f64,
    /// Work items per batch (crops per pose forward pass, frames per detector pass); 0 for
    /// stages that do not batch.
    pub mean_batch: f64,
    /// Mean number of messages waiting in the stage's input channel when it received one.
    pub mean_queue: f64,
    /// When the stage worked, `[start, end]` seconds on a clock shared by the stages (not in
    /// the JSON: `vidpose bench run --timeline` draws them).
    #[serde(skip)]
    pub busy_spans: Vec<[f32; 2]>,
}

impl StageMetrics {
    /// Empty counters for the stage called `name`.
    pub fn new(name: &str) -> Self {
        origin();
        Self {
            name: name.into(),
            rng: 0x9E3779B97F4A7C15,
            ..Default::default()
        }
    }

    /// Records that the stage worked from `start` until now (for the timeline).
    pub fn record_busy(&mut self, start: Instant) {
        let origin = origin();
        let (a, b) = (
            start.saturating_duration_since(origin).as_secs_f32(),
            origin.elapsed().as_secs_f32(),
        );
        match self.spans.last_mut() {
            // Back-to-back work is one span.
            Some(last) if a - last[1] < 1e-4 => last[1] = b,
            _ => self.spans.push([a, b]),
        }
        if self.spans.len() >= MAX_SPANS {
            // Halve the resolution: merge each pair (the gap between them counts as busy).
            self.spans = self
                .spans
                .chunks(2)
                .map(|c| [c[0][0], c[c.len() - 1][1]])
                .collect();
        }
    }

    /// Records how many messages were waiting in the input channel at a receive.
    pub fn record_queue(&mut self, waiting: usize) {
        self.queued += waiting as u64;
        self.receives += 1;
    }

    /// Adds one frame's latency sample (a stage: from the previous stage sending the frame to
    /// this one sending it on; the source: decoding it), kept in a bounded reservoir.
    pub fn record_latency(&mut self, latency: Duration) {
        let ms = latency.as_secs_f32() * 1000.0;
        self.seen += 1;
        if self.latencies_ms.len() < MAX_SAMPLES {
            self.latencies_ms.push(ms);
        } else {
            // xorshift: a uniform slot in [0, seen) replaces a sample with probability MAX/seen.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let slot = (self.rng % self.seen) as usize;
            if slot < MAX_SAMPLES {
                self.latencies_ms[slot] = ms;
            }
        }
    }

    /// Adds the counters of another thread doing the same stage's work (the source's decode
    /// threads, one per input in flight): times, counts and samples are summed.
    pub fn merge(&mut self, other: StageMetrics) {
        self.items += other.items;
        self.batches += other.batches;
        self.busy += other.busy;
        self.wait_input += other.wait_input;
        self.blocked_output += other.blocked_output;
        self.work_items += other.work_items;
        self.queued += other.queued;
        self.receives += other.receives;
        self.spans.extend(other.spans);
        self.spans.sort_by(|a, b| a[0].total_cmp(&b[0]));
        // Overlapping spans of different threads are one busy stretch of the stage.
        let mut merged: Vec<[f32; 2]> = Vec::with_capacity(self.spans.len());
        for span in self.spans.drain(..) {
            match merged.last_mut() {
                Some(last) if span[0] <= last[1] => last[1] = last[1].max(span[1]),
                _ => merged.push(span),
            }
        }
        while merged.len() >= MAX_SPANS {
            merged = merged
                .chunks(2)
                .map(|c| [c[0][0], c[c.len() - 1][1]])
                .collect();
        }
        self.spans = merged;
        let unkept = other.seen - other.latencies_ms.len() as u64;
        for ms in other.latencies_ms {
            self.record_latency(Duration::from_secs_f32(ms / 1000.0));
        }
        // Samples the other's reservoir already let go still count towards the odds.
        self.seen += unkept;
    }

    /// The totals in seconds, throughput and latency percentiles.
    pub fn summary(&self) -> StageSummary {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f32::total_cmp);
        let pct = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() - 1) as f64 * p).round() as usize;
            sorted[i] as f64
        };
        let busy = self.busy.as_secs_f64();
        StageSummary {
            stage: self.name.clone(),
            items: self.items,
            batches: self.batches,
            busy_s: busy,
            wait_input_s: self.wait_input.as_secs_f64(),
            blocked_output_s: self.blocked_output.as_secs_f64(),
            items_per_s: if busy > 0.0 {
                self.items as f64 / busy
            } else {
                0.0
            },
            latency_p50_ms: pct(0.5),
            latency_p95_ms: pct(0.95),
            mean_batch: if self.batches > 0 {
                self.work_items as f64 / self.batches as f64
            } else {
                0.0
            },
            mean_queue: if self.receives > 0 {
                self.queued as f64 / self.receives as f64
            } else {
                0.0
            },
            busy_spans: self.spans.clone(),
        }
    }
}

/// The end-of-run table, one row per stage.
pub fn table(stages: &[StageSummary]) -> String {
    let mut out = format!(
        "{:<8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "stage",
        "items",
        "batches",
        "busy s",
        "wait-in s",
        "blocked s",
        "items/s",
        "p50 ms",
        "p95 ms"
    );
    for s in stages {
        out.push_str(&format!(
            "{:<8} {:>8} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.1} {:>9.2} {:>9.2}\n",
            s.stage,
            s.items,
            s.batches,
            s.busy_s,
            s.wait_input_s,
            s.blocked_output_s,
            s.items_per_s,
            s.latency_p50_ms,
            s.latency_p95_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut m = StageMetrics::new("x");
        for i in 1..=100 {
            m.record_latency(Duration::from_millis(i));
        }
        let s = m.summary();
        assert!((s.latency_p50_ms - 50.0).abs() <= 1.0);
        assert!((s.latency_p95_ms - 95.0).abs() <= 1.0);
    }

    #[test]
    fn merged_threads_add_up() {
        let mut a = StageMetrics::new("decode");
        let mut b = StageMetrics::new("decode");
        a.items = 3;
        b.items = 4;
        a.busy = Duration::from_millis(10);
        b.busy = Duration::from_millis(30);
        for i in 1..=50 {
            a.record_latency(Duration::from_millis(i));
            b.record_latency(Duration::from_millis(50 + i));
        }
        a.merge(b);
        let s = a.summary();
        assert_eq!(s.items, 7);
        assert!((s.busy_s - 0.04).abs() < 1e-9);
        assert!((s.latency_p50_ms - 50.0).abs() <= 1.0);
        assert!((s.latency_p95_ms - 95.0).abs() <= 1.0);
    }

    #[test]
    fn reservoir_stays_bounded() {
        let mut m = StageMetrics::new("x");
        for _ in 0..(MAX_SAMPLES + 1000) {
            m.record_latency(Duration::from_micros(10));
        }
        assert_eq!(m.latencies_ms.len(), MAX_SAMPLES);
    }
}
