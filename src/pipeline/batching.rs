//! A stage that gathers work items from several frames (and videos) into one model call,
//! flushed on a full batch, a short idle timeout, or the end of input. Results go back to their
//! frames, which leave in the order they came. The detect stage batches frames, the pose stage
//! person crops.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::messages::{Frame, Msg, VideoFailure};
use super::metrics::StageMetrics;
use super::permits::FramePermits;
use super::stage::Stage;

/// What a batching stage computes.
pub trait BatchWork: Send {
    type Output;
    fn stage_name(&self) -> &'static str;
    /// How many work items `frame` brings.
    fn items(&self, frame: &Frame) -> usize;
    /// Runs `(frame, item index)` pairs together: one result per item, or an error for all.
    /// An item's error fails its video.
    fn run(
        &mut self,
        items: &[(&Frame, usize)],
    ) -> Result<Vec<Result<Self::Output, VideoFailure>>, VideoFailure>;
    /// Puts an item's result into its frame.
    fn store(&self, frame: &mut Frame, item: usize, output: Self::Output);
    /// The last look at a frame before it leaves the stage, every item done.
    fn finish(&self, _frame: &mut Frame) {}
}

enum Pending {
    /// Start/End markers keep their place between frames.
    Marker(Msg),
    /// A frame, how many items it has, and how many of them are done.
    Frame(Box<Frame>, usize, usize),
}

impl Pending {
    fn is_done(&self) -> bool {
        match self {
            Pending::Marker(_) => true,
            Pending::Frame(_, items, done) => done == items,
        }
    }
}

pub struct BatchStage<W: BatchWork> {
    work: W,
    batch_size: usize,
    timeout: Duration,
    pending: VecDeque<Pending>,
    /// Items waiting for a model call.
    waiting: usize,
    /// Videos with a failed item: their End becomes an error.
    failed: HashMap<usize, VideoFailure>,
    /// The run's frame permits: when all are held, no more input can come and a partial batch
    /// runs at once instead of waiting out the timeout.
    permits: Option<FramePermits>,
    last_input: Instant,
}

/// How often a stage holding a partial batch checks whether input can still come.
const STARVATION_POLL: Duration = Duration::from_millis(5);

impl<W: BatchWork> BatchStage<W> {
    pub fn new(work: W, batch_size: usize, timeout: Duration) -> Self {
        Self {
            work,
            batch_size: batch_size.max(1),
            timeout,
            pending: VecDeque::new(),
            waiting: 0,
            failed: HashMap::new(),
            permits: None,
            last_input: Instant::now(),
        }
    }

    /// Flushes partial batches as soon as every frame permit is held.
    pub fn with_permits(mut self, permits: FramePermits) -> Self {
        self.permits = Some(permits);
        self
    }

    /// The next batch: (position in `pending`, item index), oldest first.
    fn next_slots(&self) -> Vec<(usize, usize)> {
        let mut slots = Vec::with_capacity(self.batch_size);
        for (pos, p) in self.pending.iter().enumerate() {
            if let Pending::Frame(_, items, done) = p {
                let take = (items - done).min(self.batch_size - slots.len());
                slots.extend((*done..done + take).map(|item| (pos, item)));
            }
            if slots.len() == self.batch_size {
                break;
            }
        }
        slots
    }

    /// Runs full batches, and with `flush` the last partial one too.
    fn run_batches(&mut self, flush: bool, metrics: &mut StageMetrics) {
        while self.waiting >= self.batch_size || (flush && self.waiting > 0) {
            let slots = self.next_slots();
            let result = {
                let items: Vec<(&Frame, usize)> = slots
                    .iter()
                    .map(|&(pos, item)| match &self.pending[pos] {
                        Pending::Frame(f, _, _) => (&**f, item),
                        Pending::Marker(_) => unreachable!("slots point at frames"),
                    })
                    .collect();
                self.work.run(&items)
            };
            metrics.batches += 1;
            metrics.work_items += slots.len() as u64;
            let results = match result {
                Ok(r) if r.len() == slots.len() => r,
                Ok(r) => {
                    let e = VideoFailure::Output(format!(
                        "the model returned {} results for {} items",
                        r.len(),
                        slots.len()
                    ));
                    slots.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => slots.iter().map(|_| Err(e.clone())).collect(),
            };
            for (&(pos, item), r) in slots.iter().zip(results) {
                if let Pending::Frame(f, _, done) = &mut self.pending[pos] {
                    match r {
                        Ok(output) => self.work.store(f, item, output),
                        Err(e) => {
                            self.failed.entry(f.video.id).or_insert(e);
                        }
                    }
                    *done += 1;
                }
            }
            self.waiting -= slots.len();
        }
    }

    /// Moves every finished message at the front of the queue to `out`.
    fn emit_ready(&mut self, out: &mut Vec<Msg>) {
        while self.pending.front().is_some_and(Pending::is_done) {
            match self.pending.pop_front().expect("front exists") {
                Pending::Marker(Msg::End(video, Ok(()))) if self.failed.contains_key(&video.id) => {
                    let reason = self.failed.remove(&video.id).expect("checked above");
                    out.push(Msg::End(video, Err(reason)));
                }
                Pending::Marker(Msg::End(video, outcome)) => {
                    // The video ends: a failure upstream is the one reported, and its entry goes.
                    self.failed.remove(&video.id);
                    out.push(Msg::End(video, outcome));
                }
                Pending::Marker(msg) => out.push(msg),
                Pending::Frame(mut f, _, _) => {
                    self.work.finish(&mut f);
                    out.push(Msg::Frame(f))
                }
            }
        }
    }
}

impl<W: BatchWork> Stage for BatchStage<W> {
    fn name(&self) -> &'static str {
        self.work.stage_name()
    }

    fn process(&mut self, msg: Msg, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        self.last_input = Instant::now();
        match msg {
            Msg::Frame(f) => {
                // a video that already failed is not worked on further
                let items = if self.failed.contains_key(&f.video.id) {
                    0
                } else {
                    self.work.items(&f)
                };
                self.waiting += items;
                self.pending.push_back(Pending::Frame(f, items, 0));
            }
            marker => self.pending.push_back(Pending::Marker(marker)),
        }
        self.run_batches(false, metrics);
        self.emit_ready(out);
    }

    fn idle_timeout(&self) -> Option<Duration> {
        if self.waiting == 0 {
            return None;
        }
        let left = self.timeout.saturating_sub(self.last_input.elapsed());
        Some(match self.permits {
            Some(_) => left.min(STARVATION_POLL),
            None => left,
        })
    }

    fn on_idle(&mut self, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        let starved = self.permits.as_ref().is_some_and(FramePermits::exhausted);
        if starved || self.last_input.elapsed() >= self.timeout {
            self.run_batches(true, metrics);
            self.emit_ready(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Msg>, metrics: &mut StageMetrics) {
        self.run_batches(true, metrics);
        self.emit_ready(out);
    }
}
