//! What a comet counts since it started, for `Stats` (tests, operators) and
//! as Prometheus metrics.
//!
//! Frames are counted where they are queued (the outbox), in bulk for a
//! fan-out, so a push to ten thousand members costs one atomic add, not ten
//! thousand.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start, shared by every connection of one comet.
#[derive(Debug)]
pub(crate) struct Counters {
    room_pushes: AtomicU64,
    frames_queued: AtomicU64,
    slow_consumers: AtomicU64,
    frames_out: metrics::Counter,
    slow_consumers_metric: metrics::Counter,
    room_pushes_metric: metrics::Counter,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            room_pushes: AtomicU64::new(0),
            frames_queued: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            frames_out: metrics::counter!("courier_comet_frames_out_total"),
            slow_consumers_metric: metrics::counter!("courier_comet_slow_consumers_total"),
            room_pushes_metric: metrics::counter!("courier_comet_room_pushes_total"),
        }
    }
}

impl Counters {
    /// `n` frames were queued to connections.
    pub(crate) fn queued(&self, n: usize) {
        if n > 0 {
            self.frames_queued.fetch_add(n as u64, Ordering::Relaxed);
            self.frames_out.increment(n as u64);
        }
    }

    /// One connection was dropped for outbound overflow.
    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
        self.slow_consumers_metric.increment(1);
    }

    /// One `PushRoom` call was served.
    pub(crate) fn room_push(&self) {
        self.room_pushes.fetch_add(1, Ordering::Relaxed);
        self.room_pushes_metric.increment(1);
    }

    pub(crate) fn room_pushes(&self) -> u64 {
        self.room_pushes.load(Ordering::Relaxed)
    }
    pub(crate) fn frames_queued(&self) -> u64 {
        self.frames_queued.load(Ordering::Relaxed)
    }
    pub(crate) fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Ordering::Relaxed)
    }
}
