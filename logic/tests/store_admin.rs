//! Operating the store of record over HTTP: `GET /admin/store` and
//! `POST /admin/store/moves`, against a real PostgreSQL with two shards (two
//! databases of one server), and what a `memory://` store answers.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use courier_cluster::config::ClusterConfig;
use courier_cluster::postgres::routing::bucket_of;
use courier_cluster::Backends;
use courier_logic::{ApiKeyConfig, Scope};
use serde_json::{json, Value};

async fn get(t: &TestLogic, path: &str, key: &str) -> (u16, Value) {
    json(
        t.client
            .get(t.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post(t: &TestLogic, path: &str, key: &str, body: Value) -> (u16, Value) {
    json(
        t.client
            .post(t.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

const PUSH_ONLY: &str = "push-only-key-0123456789";

/// A logic on a two-shard store (`a` and `b`), with a push-only key too.
async fn sharded() -> (courier_testkit::postgres::PostgresServer, TestLogic) {
    let server = courier_testkit::postgres::PostgresServer::start()
        .await
        .unwrap();
    let second = server.create_database("courier_b").await.unwrap();
    let cluster = ClusterConfig {
        shards: BTreeMap::from([("a".to_owned(), server.url()), ("b".to_owned(), second)]),
        ..ClusterConfig::default()
    };
    let backends = Backends::connect(&cluster).await.unwrap();
    let mut config = config();
    config.api_keys = vec![ApiKeyConfig {
        name: "pusher".into(),
        key: PUSH_ONLY.into(),
        scopes: vec![Scope::Push],
    }];
    let logic = start_with(config, backends).await;
    (server, logic)
}

#[tokio::test]
async fn a_memory_store_has_nothing_to_operate() {
    let t = start(config()).await;
    let (status, body) = get(&t, "/admin/store", API_KEY).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("no_sharded_store"))
    );
    let (status, _) = post(
        &t,
        "/admin/store/moves",
        API_KEY,
        json!({"buckets": [1], "to": "a"}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_status_shows_every_shard_and_the_routing() {
    let (_server, t) = sharded().await;
    let (status, body) = get(&t, "/admin/store", API_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["buckets"], 1024);
    assert_eq!(body["routing_version"], 1);
    let shards = body["shards"].as_array().unwrap();
    let names: Vec<&str> = shards.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        (shards[0]["buckets"].clone(), shards[1]["buckets"].clone()),
        (json!(512), json!(512))
    );
    assert_eq!(shards[0]["ranges"], json!(["0-511"]));
    assert!(shards.iter().all(|s| s["ready"] == true));
    assert_eq!(shards[0]["nodes"].as_array().unwrap().len(), 1);
    // Not for a key without the admin scope.
    assert_eq!(get(&t, "/admin/store", PUSH_ONLY).await.0, 401);
}

#[tokio::test]
async fn a_move_request_is_checked_before_anything_moves() {
    let (_server, t) = sharded().await;
    for (body, why) in [
        (json!({"buckets": [], "to": "b"}), "no buckets"),
        (json!({"buckets": [1024], "to": "b"}), "out of range"),
        (json!({"buckets": [3, 3], "to": "b"}), "repeated"),
        (json!({"buckets": [3], "to": "nowhere"}), "unknown shard"),
        (
            json!({"buckets": (0..1025).collect::<Vec<_>>(), "to": "b"}),
            "too many",
        ),
    ] {
        let (status, reply) = post(&t, "/admin/store/moves", API_KEY, body).await;
        assert_eq!(status, 400, "{why}: {reply}");
    }
    let (status, _) = post(
        &t,
        "/admin/store/moves",
        API_KEY,
        json!({"bucket": 3, "to": "b"}),
    )
    .await;
    assert_eq!(status, 422, "a mistyped field");
    let (status, _) = post(
        &t,
        "/admin/store/moves",
        PUSH_ONLY,
        json!({"buckets": [3], "to": "b"}),
    )
    .await;
    assert_eq!(status, 401);
    let (_, body) = get(&t, "/admin/store", API_KEY).await;
    assert_eq!(body["routing_version"], 1, "nothing moved");
}

#[tokio::test]
async fn a_moved_bucket_keeps_its_messages_and_seqs() {
    let (_server, t) = sharded().await;
    let bucket = bucket_of("u:alice");
    let from = if bucket < 512 { "a" } else { "b" };
    let to = if from == "a" { "b" } else { "a" };
    for i in 1..=5 {
        let r = t
            .push("/push/users", json!({"uids": ["alice"], "data": i}))
            .await;
        assert_eq!(r.status(), 202);
    }
    let (status, started) = post(
        &t,
        "/admin/store/moves",
        API_KEY,
        json!({"buckets": [bucket], "to": to}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let done =
        courier_testkit::until_some("the move to finish", courier_testkit::PATIENCE, || async {
            let (_, body) = get(&t, "/admin/store", API_KEY).await;
            let moves = body["moves"].as_array()?.clone();
            let last = moves.last()?.clone();
            (last["state"] == "done" || last["state"] == "failed").then_some(last)
        })
        .await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (done["from"].as_str(), done["to"].as_str()),
        (Some(from), Some(to))
    );
    assert_eq!(done["messages"], 5);
    let (_, status) = get(&t, "/admin/store", API_KEY).await;
    assert_eq!(status["routing_version"], 2);

    // Every message is there under its seq, and the next one goes on.
    let r = t
        .push("/push/users", json!({"uids": ["alice"], "data": 6}))
        .await;
    let (_, accepted) = json(r).await;
    assert_eq!(accepted["seq"], 6, "{accepted}");
    let (status, page) = get(&t, "/users/alice/messages?limit=10", API_KEY).await;
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
}
