//! Drops messages already delivered, by `msg_id`.
//!
//! Delivery is at-least-once (a job retries a push the comet may already
//! have queued, a send retried after a reconnect keeps its id), so the
//! client remembers the last few ids it has seen. The memory is
//! bounded: a FIFO of ids plus a set for lookups, the oldest id forgotten
//! first.

use std::collections::{HashSet, VecDeque};

/// How many recent message ids are remembered by default.
pub(crate) const DEFAULT_DEDUP_CAPACITY: usize = 1024;

/// A bounded set of recently seen message ids.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
        }
    }

    /// Records `id`; returns `false` if it was seen recently (a duplicate).
    /// An empty id carries no identity and is always new.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_memory_is_bounded() {
        let mut ids = RecentIds::new(3);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"), "second delivery is a duplicate");
        assert!(ids.insert("b"));
        assert!(ids.insert("c"));
        assert!(ids.insert("d"), "evicts a");
        assert_eq!(ids.order.len(), 3);
        assert_eq!(ids.seen.len(), 3);
        assert!(ids.insert("a"), "a was forgotten");
        assert!(!ids.insert("d"));
    }

    #[test]
    fn empty_ids_are_never_duplicates() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert(""));
        assert!(ids.insert(""));
        assert!(ids.order.is_empty());
    }
}
