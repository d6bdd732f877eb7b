//! Opens sessions in logic in batches: one `OpenSessions` call for the
//! clients that authenticated while the comet's earlier calls were in
//! flight.
//!
//! A handshake hands its `ConnectRequest` to the opener task and awaits its
//! own answer. The task keeps at most [`IN_FLIGHT`] calls going; while they
//! all are, new requests wait in the queue, and the next free slot takes up
//! to [`BATCH`] of them at once. So one client alone costs a call of one
//! (no timer, no added wait), and a reconnect storm of thousands costs logic
//! a call per batch instead of a gRPC stream per client.

use std::sync::Arc;

use courier_proto::logic::{open_result, ConnectReply, ConnectRequest, OpenSessionsRequest};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::logic_client::{LogicError, LogicPool};

/// Most sessions one `OpenSessions` call names.
pub(crate) const BATCH: usize = 256;
/// `OpenSessions` calls in flight at once.
pub(crate) const IN_FLIGHT: usize = 2;
/// Requests queued at most; a handshake waits for room beyond that.
const QUEUE: usize = 16_384;

type Answer = Result<ConnectReply, LogicError>;

struct Pending {
    request: ConnectRequest,
    answer: oneshot::Sender<Answer>,
}

/// The handshakes' side of the opener. The task starts with the first
/// request and ends when the opener is dropped.
pub(crate) struct Opener {
    tx: mpsc::Sender<Pending>,
    /// The task's inputs until the first [`Opener::open`] starts it.
    idle: Mutex<Option<(mpsc::Receiver<Pending>, Arc<LogicPool>)>>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener calling `logic`.
    pub(crate) fn new(logic: Arc<LogicPool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            idle: Mutex::new(Some((rx, logic))),
        }
    }

    /// Opens one client's session: logic's answer to this request, or the
    /// failure of the call that carried it.
    pub(crate) async fn open(&self, request: ConnectRequest) -> Answer {
        if let Some((rx, logic)) = self.idle.lock().take() {
            tokio::spawn(run(rx, logic));
        }
        let (answer, reply) = oneshot::channel();
        if self.tx.send(Pending { request, answer }).await.is_err() {
            return Err(LogicError::NoLogic);
        }
        reply.await.unwrap_or(Err(LogicError::NoLogic))
    }

    /// Requests waiting for a call slot.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        QUEUE - self.tx.capacity()
    }
}

/// Sends queued requests in batches until every [`Opener`] is gone.
async fn run(mut rx: mpsc::Receiver<Pending>, logic: Arc<LogicPool>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A slot first: while every call is out, requests pile up and the
        // next batch takes them all.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let logic = logic.clone();
        tokio::spawn(async move {
            send(&logic, batch).await;
            drop(slot);
        });
    }
}

/// One `OpenSessions` call for `batch`; answers each request.
async fn send(logic: &LogicPool, batch: Vec<Pending>) {
    let (requests, answers): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.request, p.answer)).unzip();
    metrics::histogram!("courier_comet_open_batch").record(requests.len() as f64);
    let sent = requests.len();
    let request = OpenSessionsRequest { sessions: requests };
    match logic.open_sessions(request).await {
        Ok(reply) if reply.results.len() == sent => {
            for (answer, result) in answers.into_iter().zip(reply.results) {
                let _ = answer.send(answer_of(result.result));
            }
        }
        Ok(reply) => {
            let got = reply.results.len();
            tracing::warn!(sent, got, "logic answered a different number of opens");
            for answer in answers {
                let status = tonic::Status::internal("logic's answer did not match the request");
                let _ = answer.send(Err(LogicError::Status(status)));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}

/// One entry of logic's answer as the single call's result.
fn answer_of(result: Option<open_result::Result>) -> Answer {
    match result {
        Some(open_result::Result::Opened(reply)) => Ok(reply),
        Some(open_result::Result::Refused(refused)) => Err(LogicError::Status(tonic::Status::new(
            tonic::Code::from_i32(refused.code),
            refused.message,
        ))),
        None => Err(LogicError::Status(tonic::Status::internal(
            "logic answered an open with neither a reply nor a refusal",
        ))),
    }
}
