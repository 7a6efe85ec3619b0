//! A fixed number of frame permits: the source takes one per decoded frame and the frame gives
//! it back when it is dropped, so frames in flight never exceed the configured limit.
//!
//! With several inputs in flight each one holds at most its share of the permits (the
//! capacity divided among the open inputs, at least one): a fast stream, or a file whose
//! decoder waits on every freed permit, cannot take them all and leave a live stream
//! dropping every frame.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, Sender};

#[derive(Debug)]
struct Counters {
    capacity: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    /// Inputs open now, among which the permits are shared.
    inputs: AtomicUsize,
}

impl Counters {
    /// Permits one input may hold while `inputs` are open.
    fn share(&self) -> usize {
        (self.capacity / self.inputs.load(Ordering::SeqCst).max(1)).max(1)
    }
}

/// One open input's claim on the permits: counts the frames it holds, and its share of the
/// permits while it lives.
#[derive(Debug)]
pub struct InputPermits {
    permits: FramePermits,
    held: Arc<AtomicUsize>,
}

impl Drop for InputPermits {
    fn drop(&mut self) {
        self.permits.counters.inputs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InputPermits {
    /// Waits until this input is below its share and a permit is free; `None` if `cancelled`
    /// turns true while waiting.
    pub fn acquire(&self, cancelled: &dyn Fn() -> bool) -> Option<Permit> {
        let counters = &self.permits.counters;
        loop {
            // Alone, an input's share is every permit: wait on the channel as before.
            let share = counters.share();
            if self.held.load(Ordering::SeqCst) < share || share >= counters.capacity {
                if let Some(p) = self.permits.wait(Duration::from_millis(50), &self.held) {
                    return Some(p);
                }
            } else {
                // At its share: the others' frames go first; one of ours leaves soon.
                std::thread::sleep(Duration::from_millis(1));
            }
            if cancelled() {
                return None;
            }
        }
    }

    /// A permit if this input is below its share and one is free at once (live mode: a frame
    /// that gets none is dropped).
    pub fn try_acquire(&self) -> Option<Permit> {
        if self.held.load(Ordering::SeqCst) >= self.permits.counters.share() {
            return None;
        }
        self.permits.take.try_recv().ok()?;
        Some(self.permits.issue(Some(&self.held)))
    }

    /// Frames of this input holding a permit now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct FramePermits {
    give: Sender<()>,
    take: Receiver<()>,
    counters: Arc<Counters>,
}

/// Held by a frame; returns its permit on drop.
#[derive(Debug)]
pub struct Permit {
    give: Sender<()>,
    counters: Arc<Counters>,
    /// The frames held by the input this permit's frame came from.
    held: Option<Arc<AtomicUsize>>,
}

impl FramePermits {
    pub fn new(count: usize) -> Self {
        let (give, take) = bounded(count);
        for _ in 0..count {
            give.send(()).expect("capacity is count");
        }
        Self {
            give,
            take,
            counters: Arc::new(Counters {
                capacity: count,
                in_use: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                inputs: AtomicUsize::new(0),
            }),
        }
    }

    /// An input opens: the permits are shared among one more until the result is dropped.
    pub fn open_input(&self) -> InputPermits {
        self.counters.inputs.fetch_add(1, Ordering::SeqCst);
        InputPermits {
            permits: self.clone(),
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A permit taken from the channel, counted (for `held`, by one input).
    fn issue(&self, held: Option<&Arc<AtomicUsize>>) -> Permit {
        let now = self.counters.in_use.fetch_add(1, Ordering::SeqCst) + 1;
        self.counters.peak.fetch_max(now, Ordering::SeqCst);
        if let Some(held) = held {
            held.fetch_add(1, Ordering::SeqCst);
        }
        Permit {
            give: self.give.clone(),
            counters: self.counters.clone(),
            held: held.cloned(),
        }
    }

    /// A permit for `held`'s input if one frees within `timeout`.
    fn wait(&self, timeout: Duration, held: &Arc<AtomicUsize>) -> Option<Permit> {
        self.take.recv_timeout(timeout).ok()?;
        Some(self.issue(Some(held)))
    }

    /// Waits for a free permit, whoever holds the others; `None` if `cancelled` turns true
    /// while waiting.
    pub fn acquire(&self, cancelled: &dyn Fn() -> bool) -> Option<Permit> {
        loop {
            match self.take.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return Some(self.issue(None)),
                Err(_) if cancelled() => return None,
                Err(_) => {}
            }
        }
    }

    /// A permit if one is free at once, whoever holds the others.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.take.try_recv().ok()?;
        Some(self.issue(None))
    }

    /// Whether no new frame can come until one is dropped: every permit is held, or every
    /// open input holds its share. A stage holding frames back for a fuller batch would then
    /// wait for nothing.
    pub fn exhausted(&self) -> bool {
        let c = &self.counters;
        let inputs = c.inputs.load(Ordering::SeqCst);
        let reachable = match inputs {
            0 => c.capacity,
            n => c.capacity.min(c.share() * n),
        };
        c.in_use.load(Ordering::SeqCst) >= reachable
    }

    /// Most permits held at once so far.
    pub fn peak(&self) -> usize {
        self.counters.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.fetch_sub(1, Ordering::SeqCst);
        }
        self.counters.in_use.fetch_sub(1, Ordering::SeqCst);
        let _ = self.give.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_returned_on_drop() {
        let permits = FramePermits::new(2);
        let a = permits.acquire(&|| false).unwrap();
        let _b = permits.acquire(&|| false).unwrap();
        assert!(permits.acquire(&|| true).is_none());
        assert!(permits.exhausted());
        drop(a);
        assert!(!permits.exhausted());
        assert!(permits.acquire(&|| false).is_some());
        assert_eq!(permits.peak(), 2);
        let _c = permits.try_acquire().unwrap();
        assert!(permits.try_acquire().is_none());
    }

    #[test]
    fn each_open_input_holds_at_most_its_share() {
        let permits = FramePermits::new(4);
        let a = permits.open_input();
        // Alone, an input may take every permit.
        let alone: Vec<_> = (0..4).map(|_| a.try_acquire().unwrap()).collect();
        assert!(permits.exhausted());
        drop(alone);
        let b = permits.open_input();
        let held_a: Vec<_> = (0..2).map(|_| a.acquire(&|| false).unwrap()).collect();
        // Two permits are free, but `a` is at its share (4 / 2): they are `b`'s.
        assert!(a.try_acquire().is_none());
        assert!(a.acquire(&|| true).is_none());
        assert_eq!(a.held(), 2);
        let held_b: Vec<_> = (0..2).map(|_| b.try_acquire().unwrap()).collect();
        assert!(b.try_acquire().is_none());
        assert!(permits.exhausted());
        drop(held_a);
        assert_eq!(a.held(), 0);
        assert!(!permits.exhausted());
        // `b` ends: `a` may have all the free ones again.
        drop(held_b);
        drop(b);
        let all: Vec<_> = (0..4).map(|_| a.try_acquire().unwrap()).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(permits.peak(), 4);
    }
}
