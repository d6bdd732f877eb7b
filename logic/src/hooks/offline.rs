//! The offline webhook: messages stored for users with no connection,
//! POSTed to the application in batches (for an APNs or FCM gateway).
//!
//! Publishing only queues (a bounded channel; when it is full the message
//! is dropped and counted, so a slow application never slows a push). One
//! task takes up to `batch` messages at a time and POSTs
//! `{"messages": [...]}`, retrying a failed batch with backoff (five tries
//! over about three seconds) before it drops it. Best effort: what matters
//! is in the store, and the user reads it on connecting.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use courier_proto::client::{target, Message};
use prost::Message as _;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{encode_base64, OfflineHook};

/// One message as the webhook receives it.
#[derive(Debug, Serialize)]
struct OfflineMessage {
    /// The user it was stored for.
    uid: String,
    msg_id: String,
    seq: u64,
    epoch: u64,
    from: String,
    /// The room it was sent to, if it was a room message.
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    op: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    sent_at_ms: i64,
}

/// A message in an encoded `Message` for `uid`, as the webhook shows it.
fn offline_message(uid: &str, encoded: &[u8]) -> Option<OfflineMessage> {
    let m = Message::decode(encoded).ok()?;
    let room = match m.to.and_then(|t| t.kind) {
        Some(target::Kind::Room(room)) => Some(room),
        _ => None,
    };
    let (data, data_base64) = match String::from_utf8(m.data.to_vec()) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(encode_base64(&m.data))),
    };
    Some(OfflineMessage {
        uid: uid.to_owned(),
        msg_id: m.msg_id,
        seq: m.seq,
        epoch: m.epoch,
        from: m.from,
        room,
        op: m.op,
        data,
        data_base64,
        sent_at_ms: m.sent_at_ms,
    })
}

/// Where publishing queues offline messages.
pub(crate) struct OfflineQueue {
    tx: mpsc::Sender<(String, Bytes)>,
}

impl OfflineQueue {
    /// Starts the task that sends `hook`'s batches.
    pub(crate) fn start(http: reqwest::Client, hook: OfflineHook, secret: String) -> Self {
        let (tx, rx) = mpsc::channel(hook.queue);
        tokio::spawn(send_batches(rx, http, hook, secret));
        Self { tx }
    }

    /// Queues `message` (encoded, stamped) for `uid`; dropped if the queue
    /// is full.
    pub(crate) fn push(&self, uid: &str, message: &Bytes) {
        if self.tx.try_send((uid.to_owned(), message.clone())).is_err() {
            metrics::counter!("courier_logic_offline_dropped_total").increment(1);
        }
    }
}

async fn send_batches(
    mut rx: mpsc::Receiver<(String, Bytes)>,
    http: reqwest::Client,
    hook: OfflineHook,
    secret: String,
) {
    let mut batch = Vec::with_capacity(hook.batch);
    while rx.recv_many(&mut batch, hook.batch).await > 0 {
        let messages: Vec<OfflineMessage> = batch
            .drain(..)
            .filter_map(|(uid, bytes)| offline_message(&uid, &bytes))
            .collect();
        #[derive(Serialize)]
        struct Batch {
            messages: Vec<OfflineMessage>,
        }
        let count = messages.len() as u64;
        let Ok(body) = serde_json::to_vec(&Batch { messages }) else {
            continue;
        };
        let attempt = || super::post(&http, &hook.url, secret.as_bytes(), body.clone());
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_times(4);
        match attempt.retry(backoff).await {
            Ok(_) => {
                metrics::counter!("courier_logic_offline_sent_total").increment(count);
            }
            Err(e) => {
                metrics::counter!("courier_logic_offline_dropped_total").increment(count);
                tracing::warn!(error = %e, count, "offline webhook failed; batch dropped");
            }
        }
    }
}
