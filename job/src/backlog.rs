//! Whether a comet's worker has fallen behind.
//!
//! The consumer hands pushes to each comet's bounded queue. When a queue
//! stays full past the comet's `queue_wait`, the comet is *behind*: from
//! then on its pushes are skipped without waiting, so the dispatch to every
//! other comet goes on. The worker clears the flag once its queue has
//! drained to half, and pushes are queued again. One atomic flag shared by
//! the consumer and the worker; no lock.

use std::sync::atomic::{AtomicBool, Ordering};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    behind: AtomicBool,
}

impl Backlog {
    /// Whether pushes to the comet are skipped without waiting.
    pub(crate) fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
    }

    /// Marks the comet behind; returns whether it was not already.
    pub(crate) fn fell_behind(&self) -> bool {
        !self.behind.swap(true, Ordering::AcqRel)
    }

    /// Clears the mark once `queued` of `capacity` is down to half; returns
    /// whether the comet just caught up.
    pub(crate) fn drained(&self, queued: usize, capacity: usize) -> bool {
        queued <= capacity / 2 && self.behind.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_until_the_queue_is_down_to_half() {
        let backlog = Backlog::default();
        assert!(!backlog.is_behind());
        assert!(backlog.fell_behind());
        assert!(!backlog.fell_behind(), "reported once");
        assert!(!backlog.drained(6, 10));
        assert!(backlog.is_behind());
        assert!(backlog.drained(5, 10));
        assert!(!backlog.is_behind());
        assert!(!backlog.drained(0, 10), "caught up once");
    }
}
