//! `POST /push/batch`: many independent pushes in one request, each
//! answered as its own route would answer it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{json, session, start, API_KEY};
use serde_json::{json, Value};

async fn batch(t: &common::TestLogic, pushes: Value) -> (u16, Value) {
    let response = t
        .client
        .post(t.url("/push/batch"))
        .bearer_auth(API_KEY)
        .json(&json!({ "pushes": pushes }))
        .send()
        .await
        .unwrap();
    json(response).await
}

#[tokio::test]
async fn each_push_of_a_batch_is_answered_in_order_and_alone() {
    let t = start(common::config()).await;
    t.backends
        .sessions
        .add(&session("alice", "ka", "c1"))
        .await
        .unwrap();
    let big = "x".repeat(common::config().max_data + 1);
    let pushes = json!([
        {"to": {"users": ["alice"]}, "op": 1, "data": "one", "idempotency_key": "b-1"},
        {"to": {"room": "lobby"}, "data": {"n": 2}, "idempotency_key": "b-2"},
        {"to": {"users": ["a\u{7}b"]}, "data": 3},
        {"to": {"users": ["alice"], "room": "lobby"}, "data": 4},
        {"to": {"users": ["alice"]}, "data": big},
        {"to": {"users": ["alice"]}, "data": 6, "idempotency_key": "bad key"},
        {"to": {"keys": ["ka"]}, "data": 7},
        {"to": {"all": {"rate": 10}}, "data": 8},
        {"to": {"users": ["alice", "bob"]}, "data": 9}
    ]);
    let (status, body) = batch(&t, pushes.clone()).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [202, 202, 400, 400, 413, 400, 202, 202, 202],
        "{body}"
    );
    assert_eq!(results[0]["seq"], 1, "alice's first message");
    assert_eq!(results[1]["seq"], 1, "the room's first message");
    assert_eq!(
        results[8]["seq"],
        Value::Null,
        "several users: no single seq"
    );
    assert_eq!(results[2]["error"]["code"], "invalid_request");
    assert_eq!(results[4]["error"]["code"], "data_too_large");

    // The same batch again: the keyed pushes are repeats with their ids.
    let (_, again) = batch(&t, pushes).await;
    let again = again["results"].as_array().unwrap();
    for i in [0, 1] {
        assert_eq!(again[i]["msg_id"], results[i]["msg_id"]);
        assert_eq!(
            (again[i]["seq"].as_u64(), again[i]["repeats"].as_u64()),
            (Some(1), Some(1))
        );
    }
    // The unkeyed one is a new message.
    assert_eq!(again[8]["status"], 202);
    assert_ne!(again[8]["msg_id"], results[8]["msg_id"]);
}

#[tokio::test]
async fn a_batch_that_is_empty_too_long_or_unauthorised_is_refused_whole() {
    let t = start(common::config()).await;
    let (status, _) = batch(&t, json!([])).await;
    assert_eq!(status, 400);
    let many: Vec<Value> = (0..501)
        .map(|i| json!({"to": {"users": ["u"]}, "data": i}))
        .collect();
    let (status, _) = batch(&t, Value::Array(many)).await;
    assert_eq!(status, 400);
    let (status, _) = batch(&t, json!([{"to": {"users": ["u"]}, "data": 1, "x": 1}])).await;
    assert_eq!(status, 422, "an unknown field");
    let response = t
        .client
        .post(t.url("/push/batch"))
        .json(&json!({"pushes": [{"to": {"users": ["u"]}, "data": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Nothing of the refused batches was stored.
    let heads = t
        .backends
        .inbox
        .heads(&[courier_cluster::inbox::Stream::User("u")])
        .await
        .unwrap();
    assert_eq!(heads[0].last_seq, 0);
}
