//! Puts messages back in sequence order after stages that may finish them out of order.

use std::collections::BTreeMap;

/// Holds early arrivals until the next expected sequence number shows up.
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    next: u64,
    pending: BTreeMap<u64, T>,
    peak: usize,
}

impl<T> Default for ReorderBuffer<T> {
    fn default() -> Self {
        Self {
            next: 0,
            pending: BTreeMap::new(),
            peak: 0,
        }
    }
}

impl<T> ReorderBuffer<T> {
    /// Accepts message `seq` and returns every message now in order.
    pub fn push(&mut self, seq: u64, item: T) -> Vec<T> {
        self.pending.insert(seq, item);
        self.peak = self.peak.max(self.pending.len());
        let mut ready = Vec::new();
        while let Some(item) = self.pending.remove(&self.next) {
            ready.push(item);
            self.next += 1;
        }
        ready
    }

    /// Messages waiting for an earlier one.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Most messages held at once.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_order() {
        let mut r = ReorderBuffer::default();
        assert!(r.push(2, 'c').is_empty());
        assert!(r.push(1, 'b').is_empty());
        assert_eq!(r.push(0, 'a'), vec!['a', 'b', 'c']);
        assert_eq!(r.push(3, 'd'), vec!['d']);
        assert!(r.is_empty());
        assert_eq!(r.peak(), 3);
    }
}
