//! Reporting every connection and room to logic again, when logic says its
//! session store lost writes (the `Resync` RPC).
//!
//! The comet holds the truth about its own connections. A pass sends them
//! all (`RestoreSessions`, [`BATCH`] per call, with the rooms they are in)
//! and, from the heads logic answers with, tells every client where its
//! streams stand: an unasked `HeartbeatReply` (frame id 0) with its inbox's
//! head, and one per room with that room's head, encoded once per user and
//! once per room. A client that sees a head past what it showed syncs the
//! rest, so messages stored while logic knew of no connection are not
//! lost, only late. Requests that arrive during a pass start one more pass
//! after it (logics that noticed the loss each ask).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use courier_proto::client::{frame::Body, Frame, HeartbeatReply, StreamHead};
use courier_proto::encode_frame;
use courier_proto::logic::{RestoreSessionsReply, RestoreSessionsRequest, RestoredSession};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::logic_client::LogicPool;
use crate::registry::Identity;

/// Connections (and rooms) per `RestoreSessions` call.
const BATCH: usize = 1_000;
/// Attempts at one call before the pass moves on (the sessions of that
/// batch come back with their next session checks).
const ATTEMPTS: usize = 5;
/// Pause between attempts.
const RETRY: Duration = Duration::from_millis(500);
/// Least time between two passes: a store that keeps losing its data (or
/// a flood of `Resync` calls) costs a comet at most one pass per this,
/// and its clients one head per stream per pass.
const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// Asking for passes: the RPC bumps the counter, the task follows it.
#[derive(Debug, Clone)]
pub(crate) struct ResyncRequests(watch::Sender<u64>);

impl Default for ResyncRequests {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl ResyncRequests {
    /// Asks for a pass (one more, if one is running).
    pub(crate) fn request(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// What a pass reads and who it reports to.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) comet_id: String,
    pub(crate) directory: Arc<Directory>,
    pub(crate) logic: Arc<LogicPool>,
}

/// Runs a pass per request until `stop`.
pub(crate) async fn run(reporter: Reporter, requests: ResyncRequests, stop: CancellationToken) {
    let mut asked = requests.0.subscribe();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = asked.changed() => {
                if changed.is_err() {
                    return;
                }
                asked.borrow_and_update();
            }
        }
        let started = tokio::time::Instant::now();
        let (connections, rooms) = pass(&reporter).await;
        tracing::info!(
            connections,
            rooms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reported every connection to logic again"
        );
        metrics::counter!("courier_comet_resyncs_total").increment(1);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(MIN_INTERVAL.saturating_sub(started.elapsed())) => {}
        }
    }
}

/// One pass: returns how many connections and rooms were reported.
async fn pass(reporter: &Reporter) -> (usize, usize) {
    let directory = &reporter.directory;
    let connections = directory.keys.identities();
    let rooms: Vec<String> = directory.rooms.counts().into_keys().collect();
    let calls = connections
        .len()
        .div_ceil(BATCH)
        .max(rooms.len().div_ceil(BATCH))
        .max(1);
    for i in 0..calls {
        let batch = connections
            .get(i * BATCH..((i + 1) * BATCH).min(connections.len()))
            .unwrap_or(&[]);
        let room_batch = rooms
            .get(i * BATCH..((i + 1) * BATCH).min(rooms.len()))
            .unwrap_or(&[]);
        let request = RestoreSessionsRequest {
            comet_id: reporter.comet_id.clone(),
            sessions: batch
                .iter()
                .map(|(key, identity)| RestoredSession {
                    uid: identity.uid.to_string(),
                    key: key.to_string(),
                    device: identity.device.as_deref().unwrap_or_default().to_owned(),
                })
                .collect(),
            rooms: room_batch.to_vec(),
        };
        match restore(&reporter.logic, request).await {
            Some(reply) => tell_heads(directory, batch, &reply),
            None => tracing::warn!(batch = i, "logic did not take a batch of restored sessions; their session checks will restore them"),
        }
    }
    (connections.len(), rooms.len())
}

async fn restore(
    logic: &LogicPool,
    request: RestoreSessionsRequest,
) -> Option<RestoreSessionsReply> {
    for attempt in 1..=ATTEMPTS {
        match logic.restore_sessions(request.clone()).await {
            Ok(reply) => return Some(reply),
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "RestoreSessions failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => tracing::warn!(error = %e, "RestoreSessions failed"),
        }
    }
    None
}

/// Queues each connection of `batch` its inbox's head, and each room's
/// members the room's head.
fn tell_heads(directory: &Directory, batch: &[(Arc<str>, Identity)], reply: &RestoreSessionsReply) {
    let mut by_uid: HashMap<&str, bytes::Bytes> = HashMap::new();
    for (key, identity) in batch {
        let Some(head) = reply.inboxes.get(&*identity.uid) else {
            continue;
        };
        let frame = by_uid
            .entry(&identity.uid)
            .or_insert_with(|| heads_frame(Some(*head), HashMap::new()))
            .clone();
        if let Some(outbox) = directory.keys.get(key) {
            outbox.push(frame);
        }
    }
    for (room, head) in &reply.rooms {
        let frame = heads_frame(None, HashMap::from([(room.clone(), *head)]));
        directory.push_room(room, &[frame]);
    }
}

/// An unasked `HeartbeatReply` carrying these heads.
fn heads_frame(inbox: Option<StreamHead>, rooms: HashMap<String, StreamHead>) -> bytes::Bytes {
    encode_frame(&Frame::new(
        0,
        Body::HeartbeatReply(HeartbeatReply { inbox, rooms }),
    ))
}
