//! Running a stage on its own thread: receive, process, send, and measure all three.
//!
//! Stages form a chain, each one thread reading one channel, so messages arrive in the order
//! they were sent: a stage sees a video's frames in order without any reordering.

use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};

use super::messages::Msg;
use super::metrics::StageMetrics;

/// A middle stage: takes messages, emits messages. A stage that batches keeps frames back and
/// emits them later (on a full batch, a timeout or the end of a video), in the order they came.
pub trait Stage: Send {
    /// The stage's name in the metrics.
    fn name(&self) -> &'static str;
    /// Handles one message; results go to `out`. Count batches in `metrics.batches`.
    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics);
    /// How long to wait for input before `on_idle` (only when holding work back).
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }
    /// No input came within `idle_timeout`: emit what should not wait longer.
    fn on_idle(&mut self, _out: &mut Vec<Msg>, _metrics: &mut StageMetrics) {}
    /// End of input: emit anything held back.
    fn finish(&mut self, _out: &mut Vec<Msg>, _metrics: &mut StageMetrics) {}
}

/// Sends, stamping the stage-entry time for the next stage; false when the receiver is gone.
fn send(tx: &Sender<Msg>, msg: Msg, metrics: &mut StageMetrics) -> bool {
    let msg = match msg {
        Msg::Frame(mut f) => {
            metrics.record_latency(f.entered_stage.elapsed());
            f.entered_stage = Instant::now();
            Msg::Frame(f)
        }
        m => m,
    };
    let t = Instant::now();
    let ok = tx.send(msg).is_ok();
    metrics.blocked_output += t.elapsed();
    ok
}

/// Runs `stage` until its input closes; returns its metrics.
pub fn run_stage(mut stage: Box<dyn Stage>, rx: Receiver<Msg>, tx: Sender<Msg>) -> StageMetrics {
    let mut metrics = StageMetrics::new(stage.name());
    let started = Instant::now();
    let mut out = Vec::new();
    'run: loop {
        let t = Instant::now();
        let received = match stage.idle_timeout() {
            Some(timeout) => match rx.recv_timeout(timeout) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(msg) => Some(msg),
                Err(_) => break,
            },
        };
        metrics.wait_input += t.elapsed();
        let t = Instant::now();
        match received {
            Some(msg) => {
                metrics.record_queue(rx.len());
                if matches!(msg, Msg::Frame(_)) {
                    metrics.items += 1;
                }
                stage.process(msg, &mut out, &mut metrics);
            }
            None => stage.on_idle(&mut out, &mut metrics),
        }
        metrics.record_busy(t);
        for msg in out.drain(..) {
            if !send(&tx, msg, &mut metrics) {
                break 'run;
            }
        }
    }
    let t = Instant::now();
    stage.finish(&mut out, &mut metrics);
    metrics.record_busy(t);
    for msg in out.drain(..) {
        if !send(&tx, msg, &mut metrics) {
            break;
        }
    }
    metrics.busy = started
        .elapsed()
        .saturating_sub(metrics.wait_input + metrics.blocked_output);
    metrics
}
