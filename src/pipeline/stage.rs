//! Running a stage on its own thread: receive, process, send, and measure all three.

use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};

use super::messages::{Envelope, Msg};
use super::metrics::StageMetrics;
use super::reorder::ReorderBuffer;

/// A middle stage: takes messages, emits messages. A stage that batches keeps frames back and
/// emits them later (on a full batch, a timeout or the end of a video).
pub trait Stage: Send {
    fn name(&self) -> &'static str;
    /// Whether the stage must see messages in run order (a reorder buffer is put before it).
    fn needs_order(&self) -> bool {
        false
    }
    /// Handles one message; results go to `out`. Count batches in `metrics.batches`.
    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics);
    /// How long to wait for input before `on_idle` (only when holding work back).
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }
    fn on_idle(&mut self, _out: &mut Vec<Msg>, _metrics: &mut StageMetrics) {}
    /// End of input: emit anything held back.
    fn finish(&mut self, _out: &mut Vec<Msg>, _metrics: &mut StageMetrics) {}
}

/// Sequence numbers are re-assigned on output so that a later reorder buffer sees 0, 1, 2, ...
struct Output {
    tx: Sender<Envelope>,
    next_seq: u64,
}

impl Output {
    /// Sends, stamping the stage-entry time for the next stage; false when the receiver is gone.
    fn send(&mut self, msg: Msg, metrics: &mut StageMetrics) -> bool {
        let msg = match msg {
            Msg::Frame(mut f) => {
                metrics.record_latency(f.entered_stage.elapsed());
                f.entered_stage = Instant::now();
                Msg::Frame(f)
            }
            m => m,
        };
        let env = Envelope {
            seq: self.next_seq,
            msg,
        };
        self.next_seq += 1;
        let t = Instant::now();
        let ok = self.tx.send(env).is_ok();
        metrics.blocked_output += t.elapsed();
        ok
    }
}

/// Runs `stage` until its input closes; returns its metrics.
pub fn run_stage(
    mut stage: Box<dyn Stage>,
    rx: Receiver<Envelope>,
    tx: Sender<Envelope>,
) -> StageMetrics {
    let mut metrics = StageMetrics::new(stage.name());
    let started = Instant::now();
    let mut output = Output { tx, next_seq: 0 };
    let mut out = Vec::new();
    let mut reorder = stage.needs_order().then(ReorderBuffer::default);
    'run: loop {
        let t = Instant::now();
        let received = match stage.idle_timeout() {
            Some(timeout) => match rx.recv_timeout(timeout) {
                Ok(env) => Some(env),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(env) => Some(env),
                Err(_) => break,
            },
        };
        metrics.wait_input += t.elapsed();
        match received {
            Some(env) => {
                let ready = match reorder.as_mut() {
                    Some(buffer) => buffer.push(env.seq, env.msg),
                    None => vec![env.msg],
                };
                for msg in ready {
                    if matches!(msg, Msg::Frame(_)) {
                        metrics.items += 1;
                    }
                    stage.process(msg, &mut out, &mut metrics);
                }
            }
            None => stage.on_idle(&mut out, &mut metrics),
        }
        for msg in out.drain(..) {
            if !output.send(msg, &mut metrics) {
                break 'run;
            }
        }
    }
    stage.finish(&mut out, &mut metrics);
    for msg in out.drain(..) {
        if !output.send(msg, &mut metrics) {
            break;
        }
    }
    metrics.busy = started
        .elapsed()
        .saturating_sub(metrics.wait_input + metrics.blocked_output);
    metrics
}
