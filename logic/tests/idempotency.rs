//! `Idempotency-Key` on the push API: scoped to the API key that sent it,
//! refused (422) when reused for another push, and a retry after a failed
//! publish is delivered live.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{decoded, json, next_envelope, session, start, start_with, API_KEY};
use courier_cluster::config::ClusterConfig;
use courier_cluster::{Backends, Consumer, Queue};
use courier_logic::{ApiKeyConfig, Scope};
use courier_proto::queue::envelope::Kind;
use serde_json::json;

const KEY_A: &str = "backend-a-key-0123456789";
const KEY_B: &str = "backend-b-key-0123456789";

async fn push_as(
    t: &common::TestLogic,
    api_key: &str,
    idempotency_key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = t
        .client
        .post(t.url("/push/users"))
        .bearer_auth(api_key)
        .header("Idempotency-Key", idempotency_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    json(response).await
}

fn two_backends() -> courier_logic::LogicConfig {
    let key = |name: &str, key: &str| ApiKeyConfig {
        name: name.into(),
        key: key.into(),
        scopes: vec![Scope::Push],
    };
    courier_logic::LogicConfig {
        api_keys: vec![key("a", KEY_A), key("b", KEY_B)],
        ..common::config()
    }
}

#[tokio::test]
async fn the_same_key_from_two_api_keys_is_two_pushes() {
    let t = start(two_backends()).await;
    let body = json!({"uids": ["alice"], "data": "hi"});
    let (status, a) = push_as(&t, KEY_A, "order-1", body.clone()).await;
    assert_eq!((status, a["seq"].as_u64()), (202, Some(1)));
    let (status, b) = push_as(&t, KEY_B, "order-1", body.clone()).await;
    assert_eq!((status, b["seq"].as_u64()), (202, Some(2)), "{b}");
    assert_ne!(a["msg_id"], b["msg_id"]);
    let (status, again) = push_as(&t, KEY_A, "order-1", body).await;
    assert_eq!(status, 202);
    assert_eq!(
        (again["seq"].as_u64(), again["repeats"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(again["msg_id"], a["msg_id"]);
}

#[tokio::test]
async fn a_key_reused_for_another_push_is_422_and_the_first_stays() {
    let t = start(common::config()).await;
    let (status, first) = push_as(&t, API_KEY, "k", json!({"uids": ["alice"], "data": 1})).await;
    assert_eq!(status, 202);
    for other in [
        json!({"uids": ["alice"], "data": 2}),
        json!({"uids": ["alice"], "data": 1, "op": 9}),
    ] {
        let (status, body) = push_as(&t, API_KEY, "k", other).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "idempotency_key_reused");
    }
    let stored = common::inbox_of(&t, "alice").await;
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(
        (m.msg_id.as_str(), &m.data[..]),
        (first["msg_id"].as_str().unwrap(), &b"1"[..])
    );
}

/// The memory queue, failing the first `failures` publishes as a broker
/// that dies between the store and the publish would.
struct FailingFirst {
    inner: Arc<dyn Queue>,
    failures: AtomicUsize,
}

#[async_trait::async_trait]
impl Queue for FailingFirst {
    async fn publish(&self, key: &str, payload: bytes::Bytes) -> courier_cluster::Result<()> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(courier_cluster::Error::Unavailable {
                backend: "queue",
                message: "broker died".into(),
            });
        }
        self.inner.publish(key, payload).await
    }
    async fn subscribe(&self, group: &str) -> courier_cluster::Result<Box<dyn Consumer>> {
        self.inner.subscribe(group).await
    }
    fn health(&self) -> tokio::sync::watch::Receiver<courier_cluster::queue::QueueHealth> {
        self.inner.health()
    }
}

#[tokio::test]
async fn a_retry_after_a_failed_publish_is_delivered_live() {
    let mut backends = Backends::connect(&ClusterConfig::default()).await.unwrap();
    backends.queue = Arc::new(FailingFirst {
        inner: backends.queue.clone(),
        failures: AtomicUsize::new(1),
    });
    let t = start_with(common::config(), backends).await;
    t.backends
        .sessions
        .add(&session("alice", "ka", "c1"))
        .await
        .unwrap();
    let consumer = t.backends.queue.subscribe("test").await.unwrap();
    let body = json!({"uids": ["alice"], "data": "once"});

    let (status, _) = push_as(&t, API_KEY, "retry-me", body.clone()).await;
    assert_eq!(status, 503, "stored, but the publish failed");
    let (status, retry) = push_as(&t, API_KEY, "retry-me", body).await;
    assert_eq!(status, 202);
    assert_eq!(
        (retry["seq"].as_u64(), retry["repeats"].as_u64()),
        (Some(1), Some(1))
    );

    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("alice"));
    let Kind::Keys(push) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(push.keys, ["ka"]);
    let m = decoded(&push.message);
    assert_eq!((m.seq, &m.data[..]), (1, &b"\"once\""[..]));
    assert_eq!(m.msg_id, retry["msg_id"].as_str().unwrap());
}
