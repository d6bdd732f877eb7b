//! What a comet counts since it started, for `Stats` (tests, operators) and
//! as Prometheus metrics.
//!
//! Frames are counted where they are queued (the outbox), in bulk for a
//! fan-out, so a push to ten thousand members costs one atomic add, not ten
//! thousand.
//!
//! [`describe`] gives every metric a comet emits its HELP text and unit.

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

/// Describes every metric this crate emits to the installed recorder: the
/// HELP text and unit `/metrics` shows with each.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

    describe_counter!(
        "courier_comet_connections_total",
        Unit::Count,
        "Client connections (TCP and WebSocket) that passed the accept limits, counted before their handshake."
    );
    describe_gauge!(
        "courier_comet_connections",
        Unit::Count,
        "Authenticated client connections open now."
    );
    describe_counter!(
        "courier_comet_websockets_total",
        Unit::Count,
        "WebSocket upgrades completed, by the subprotocol chosen."
    );
    describe_counter!(
        "courier_comet_accepts_refused_total",
        Unit::Count,
        "Connections refused as busy because the accept rate (accept_rate) was exceeded."
    );
    describe_counter!(
        "courier_comet_handshakes_refused_total",
        Unit::Count,
        "Connections refused because too many handshakes were in progress (in all or from their address)."
    );
    describe_histogram!(
        "courier_comet_open_batch",
        Unit::Count,
        "Handshakes whose sessions one OpenSessions call to logic opened together."
    );
    describe_histogram!(
        "courier_comet_delivery_latency_seconds",
        Unit::Seconds,
        "Time from logic accepting a message (its sent_at_ms, logic's clock) to this comet queuing it to its connections, once per message per push call."
    );
    describe_counter!(
        "courier_comet_frames_in_total",
        Unit::Count,
        "Frames read from authenticated clients."
    );
    describe_counter!(
        "courier_comet_frames_out_total",
        Unit::Count,
        "Frames queued to client connections."
    );
    describe_counter!(
        "courier_comet_slow_consumers_total",
        Unit::Count,
        "Connections closed because their outbound queue overflowed."
    );
    describe_counter!(
        "courier_comet_room_pushes_total",
        Unit::Count,
        "PushRoom calls served."
    );
    describe_counter!(
        "courier_comet_broadcasts_unpaced_total",
        Unit::Count,
        "Broadcasts with a rate sent to every connection at once because the most paced broadcasts were already in progress."
    );
    describe_counter!(
        "courier_comet_sessions_closed_total",
        Unit::Count,
        "Closed sessions logic was told of (CloseSessions calls that succeeded)."
    );
    describe_counter!(
        "courier_comet_close_retries_total",
        Unit::Count,
        "CloseSessions calls to logic that failed and were retried."
    );
    describe_counter!(
        "courier_comet_revoked_closes_total",
        Unit::Count,
        "Connections closed because their token was revoked."
    );
    describe_counter!(
        "courier_comet_resyncs_total",
        Unit::Count,
        "Passes reporting every connection and room to logic again (asked when logic's session store lost writes)."
    );
    describe_gauge!(
        "courier_comet_drain_told",
        Unit::Count,
        "Connections the drain in progress has told to reconnect elsewhere."
    );
}
