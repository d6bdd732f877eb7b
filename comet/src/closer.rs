//! Tells logic which connections closed, in batches, until logic has them.
//!
//! Sessions do not expire (an idle connection costs the store nothing), so
//! a close that never reaches logic would leave a session behind for as long
//! as this comet lives. Every connection task hands its close to one
//! [`Closer`] task, which sends what has queued up as one `CloseSessions`
//! call (at most [`BATCH`] sessions) and retries a failed call with backoff
//! until it succeeds or the comet stops. When thousands of clients leave at
//! once (a bench ending, a network cut) that is a handful of calls instead
//! of thousands racing for logic's streams.
//!
//! What is still queued when the comet stops is dropped: logic forgets the
//! comet's sessions when this process leaves discovery, or when a process
//! under the same id starts.

use std::sync::Arc;
use std::time::Duration;

use courier_proto::logic::{CloseSessionsRequest, ClosedSession};
use courier_runtime::backoff::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::logic_client::LogicPool;

/// Most sessions one `CloseSessions` call names.
pub(crate) const BATCH: usize = 1_000;
/// Closes queued at most; a connection task waits for room beyond that.
const QUEUE: usize = 65_536;

/// The connection tasks' side: queues closes for the closer task.
#[derive(Debug, Clone)]
pub(crate) struct Closer {
    tx: mpsc::Sender<ClosedSession>,
}

impl Closer {
    /// A closer and the queue's other end, for [`run`].
    pub(crate) fn new() -> (Closer, mpsc::Receiver<ClosedSession>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Closer { tx }, rx)
    }

    /// Queues the close of `uid`'s connection `key`. Waits while the queue
    /// is full; a closer that has stopped drops it (see the module docs).
    pub(crate) async fn close(&self, uid: String, key: String) {
        let _ = self.tx.send(ClosedSession { uid, key }).await;
    }
}

/// Sends queued closes in batches until `stop` fires and the queue is
/// empty, or every sender is gone.
pub(crate) async fn run(
    mut rx: mpsc::Receiver<ClosedSession>,
    logic: Arc<LogicPool>,
    comet_id: String,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            biased;
            closed = rx.recv() => closed,
            _ = stop.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(closed) => batch.push(closed),
                Err(_) => break,
            }
        }
        let request = CloseSessionsRequest {
            comet_id: comet_id.clone(),
            sessions: std::mem::take(&mut batch),
        };
        if !send(&logic, request, &stop).await {
            let dropped = rx.len();
            tracing::warn!(dropped, "comet stopping with closes logic has not taken");
            return;
        }
    }
}

/// Sends one batch, retrying with backoff. `false` if `stop` fired first.
async fn send(logic: &LogicPool, request: CloseSessionsRequest, stop: &CancellationToken) -> bool {
    let mut delays = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let count = request.sessions.len();
    loop {
        match logic.close_sessions(request.clone()).await {
            Ok(()) => {
                metrics::counter!("courier_comet_sessions_closed_total").increment(count as u64);
                return true;
            }
            Err(e) => {
                metrics::counter!("courier_comet_close_retries_total").increment(1);
                tracing::debug!(error = %e, count, "cannot close sessions in logic yet; retrying");
            }
        }
        let delay = delays.next_delay();
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
