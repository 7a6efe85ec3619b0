//! A fixed number of frame permits: the source takes one per decoded frame and the frame gives
//! it back when it is dropped, so frames in flight never exceed the configured limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam::channel::{bounded, Receiver, Sender};

#[derive(Debug)]
struct Counters {
    capacity: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
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
            }),
        }
    }

    /// Waits for a free permit; `None` if `cancelled` turns true while waiting.
    pub fn acquire(&self, cancelled: &dyn Fn() -> bool) -> Option<Permit> {
        loop {
            match self.take.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(()) => break,
                Err(_) if cancelled() => return None,
                Err(_) => {}
            }
        }
        let now = self.counters.in_use.fetch_add(1, Ordering::SeqCst) + 1;
        self.counters.peak.fetch_max(now, Ordering::SeqCst);
        Some(Permit {
            give: self.give.clone(),
            counters: self.counters.clone(),
        })
    }

    /// A permit if one is free at once (live mode: a frame that finds none is dropped).
    pub fn try_acquire(&self) -> Option<Permit> {
        self.take.try_recv().ok()?;
        let now = self.counters.in_use.fetch_add(1, Ordering::SeqCst) + 1;
        self.counters.peak.fetch_max(now, Ordering::SeqCst);
        Some(Permit {
            give: self.give.clone(),
            counters: self.counters.clone(),
        })
    }

    /// Whether every permit is held: no new frame can be decoded until one is dropped, so a
    /// stage holding frames back for a fuller batch would wait for nothing.
    pub fn exhausted(&self) -> bool {
        self.counters.in_use.load(Ordering::SeqCst) >= self.counters.capacity
    }

    /// Most permits held at once so far.
    pub fn peak(&self) -> usize {
        self.counters.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
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
}
