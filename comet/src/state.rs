//! What a comet's connection tasks share: config, token keys, the
//! [`Directory`] of connections, the logic pool, the per-IP limits, and the
//! drain signal and task tracker.
//!
//! One `Arc<CometState>` per comet, no globals, so `courier up` and the tests
//! can run several comets in one process. The push service does not take
//! this: it gets only the [`Directory`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use courier_proto::logic::ClosedSession;
use courier_runtime::revoked::Revoked;
use courier_runtime::TokenKeys;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::closer::{self, Closer};
use crate::config::CometConfig;
use crate::directory::Directory;
use courier_runtime::per_ip::IpConnections;

use crate::limits::Handshakes;
use crate::logic_client::LogicPool;
use crate::opener::Opener;
use crate::resync::ResyncRequests;

/// The comet's shared state.
#[derive(Debug)]
pub(crate) struct CometState {
    pub(crate) config: CometConfig,
    pub(crate) tokens: TokenKeys,
    pub(crate) directory: Arc<Directory>,
    pub(crate) logic: Arc<LogicPool>,
    /// Open connections per client IP (`max_connections_per_ip`).
    pub(crate) ip_connections: Arc<IpConnections>,
    /// Connections still in their handshake (`max_handshakes`,
    /// `max_handshakes_per_ip`).
    pub(crate) handshakes: Handshakes,
    /// Cancelled to ask for a drain (the `Drain` RPC); shutdown asks too.
    pub(crate) drain_requested: CancellationToken,
    /// Cancelled once the drain's waves are over: every connection left
    /// sends `Reconnect` and closes, and so does any still handshaking.
    pub(crate) draining: CancellationToken,
    /// Connection tasks and the work they spawn, awaited on shutdown.
    pub(crate) tracker: TaskTracker,
    /// The one clock every rate limiter reads (see
    /// [`crate::limits::rate_limiter`]).
    pub(crate) clock: governor::clock::DefaultClock,
    /// Where handshakes open their sessions in logic, batched.
    pub(crate) opener: Opener,
    /// Where connection tasks queue their sessions' closes for logic.
    pub(crate) closer: Closer,
    /// Where logic's `Resync` asks for every connection to be reported again.
    pub(crate) resync: ResyncRequests,
    /// The revoked tokens in force ([`crate::revocations`]).
    pub(crate) revoked: watch::Sender<Arc<Revoked>>,
    /// The closer task's end of the queue, until [`CometState::spawn_closer`].
    closes: Mutex<Option<mpsc::Receiver<ClosedSession>>>,
    /// Random per process, so keys differ across restarts of one comet id.
    boot: u32,
    next_conn: AtomicU64,
}

impl CometState {
    /// Builds the state of a comet that is about to serve.
    pub(crate) fn new(config: CometConfig, logic: Arc<LogicPool>) -> Self {
        let tokens = TokenKeys::new(config.jwt_secret.as_bytes());
        let (closer, closes) = Closer::new();
        Self {
            clock: governor::clock::DefaultClock::default(),
            closer,
            resync: ResyncRequests::default(),
            revoked: watch::Sender::new(Arc::default()),
            opener: Opener::new(logic.clone()),
            closes: Mutex::new(Some(closes)),
            tokens,
            ip_connections: IpConnections::new(config.max_connections_per_ip),
            handshakes: Handshakes::new(config.max_handshakes, config.max_handshakes_per_ip),
            directory: Arc::new(Directory::default()),
            logic,
            drain_requested: CancellationToken::new(),
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

    /// Starts the task that sends the queued session closes to logic,
    /// until `stop` fires and the queue is empty (once; later calls return
    /// `None`).
    pub(crate) fn spawn_closer(&self, stop: CancellationToken) -> Option<JoinHandle<()>> {
        let closes = self.closes.lock().take()?;
        Some(tokio::spawn(closer::run(
            closes,
            self.logic.clone(),
            self.config.id.clone(),
            stop,
        )))
    }

    /// A connection key unique across this comet's connections and restarts.
    pub(crate) fn next_key(&self) -> Arc<str> {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-{:08x}-{n}", self.config.id, self.boot))
    }
}
