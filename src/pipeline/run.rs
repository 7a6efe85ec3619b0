//! Runs a chain: the source, each stage and the sink on threads of their own, joined by
//! bounded channels.

use std::sync::atomic::AtomicBool;

use crossbeam::channel::{bounded, Sender};

use super::messages::Msg;
use super::metrics::StageMetrics;
use super::report::RunReport;
use super::sink::{run_sink, FrameSink};
use super::stage::{run_stage, Stage};

/// A stage thread panicked; the message is the panic's.
#[derive(Debug, thiserror::Error)]
#[error("a pipeline stage stopped unexpectedly: {0}")]
pub struct StagePanicked(pub String);

/// How the sink treats failures.
pub struct SinkSettings<'a> {
    /// Stop the run (through `cancel`) after the first failed video.
    pub fail_fast: bool,
    /// Set to stop the source.
    pub cancel: &'a AtomicBool,
}

/// Runs `source` -> `stages` -> `sink` until the source is done and every message has reached
/// the sink; each channel holds at most `capacity` messages. Returns the metrics of every
/// stage, source first and sink last; the sink records each video's end in `report`.
pub fn execute<S>(
    source: S,
    stages: Vec<Box<dyn Stage>>,
    sink: Box<dyn FrameSink>,
    capacity: usize,
    report: &mut RunReport,
    settings: SinkSettings<'_>,
) -> Result<Vec<StageMetrics>, StagePanicked>
where
    S: FnOnce(Sender<Msg>) -> StageMetrics + Send,
{
    std::thread::scope(|scope| {
        let (tx, mut rx) = bounded::<Msg>(capacity);
        let source = scope.spawn(move || source(tx));
        let mut handles = Vec::new();
        for stage in stages {
            let (tx, next_rx) = bounded::<Msg>(capacity);
            let input = std::mem::replace(&mut rx, next_rx);
            handles.push(scope.spawn(move || run_stage(stage, input, tx)));
        }
        let sink_metrics = run_sink(sink, rx, report, settings.fail_fast, settings.cancel);
        let join = |h: std::thread::ScopedJoinHandle<'_, StageMetrics>| {
            h.join().map_err(|p| {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                StagePanicked(what)
            })
        };
        let mut all = vec![join(source)?];
        for h in handles {
            all.push(join(h)?);
        }
        all.push(sink_metrics);
        Ok(all)
    })
}
