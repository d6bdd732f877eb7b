//! What every task of one comet shares: config, token keys, the key and room
//! indexes, the logic pool and the counters.
//!
//! One `Arc<CometState>` per comet, no globals, so `courier up` and the tests
//! can run several comets in one process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use courier_cluster::TokenKeys;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CometConfig;
use crate::limits::IpConnections;
use crate::logic_client::LogicPool;
use crate::registry::Registry;
use crate::rooms::Rooms;

/// The comet's shared state.
#[derive(Debug)]
pub(crate) struct CometState {
    pub(crate) config: CometConfig,
    pub(crate) tokens: TokenKeys,
    pub(crate) registry: Registry,
    pub(crate) rooms: Rooms,
    pub(crate) logic: Arc<LogicPool>,
    pub(crate) counters: Arc<Counters>,
    /// Open connections per client IP (`max_connections_per_ip`).
    pub(crate) ip_connections: Arc<IpConnections>,
    /// Cancelled when the comet drains: every connection sends `Reconnect`
    /// and closes.
    pub(crate) draining: CancellationToken,
    /// Connection tasks and the work they spawn, awaited on shutdown.
    pub(crate) tracker: TaskTracker,
    /// Random per process, so keys differ across restarts of one comet id.
    boot: u32,
    next_conn: AtomicU64,
}

impl CometState {
    /// Builds the state of a comet that is about to serve.
    pub(crate) fn new(config: CometConfig, logic: Arc<LogicPool>) -> Self {
        let tokens = TokenKeys::new(config.jwt_secret.as_bytes());
        Self {
            tokens,
            ip_connections: IpConnections::new(config.max_connections_per_ip),
            registry: Registry::default(),
            rooms: Rooms::default(),
            logic,
            counters: Arc::new(Counters::default()),
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            boot: rand::random(),
            next_conn: AtomicU64::new(1),
            config,
        }
    }

    /// This comet's id.
    pub(crate) fn id(&self) -> &str {
        &self.config.id
    }

    /// A connection key unique across this comet's connections and restarts.
    pub(crate) fn next_key(&self) -> Arc<str> {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-{:08x}-{n}", self.config.id, self.boot))
    }
}

/// Counters since start, reported by `Stats` and exported as metrics.
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
