//! The HTTP API, driven over real sockets against memory backends.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{decoded, envelopes_until_op, json, next_envelope, session, start, API_KEY, SECRET};
use courier_cluster::discovery::register_json;
use courier_cluster::{CometNode, NodeState, ServiceKind};
use courier_proto::client::Target;
use courier_proto::queue::envelope::Kind;
use courier_runtime::TokenKeys;
use serde_json::json;

async fn register(t: &common::TestLogic, user: &str, password: &str) -> (u16, serde_json::Value) {
    let r = t
        .client
        .post(t.url("/users"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    json(r).await
}

async fn login(t: &common::TestLogic, user: &str, password: &str) -> (u16, serde_json::Value) {
    let r = t
        .client
        .post(t.url("/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    json(r).await
}

fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn error_message(body: &serde_json::Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn register_creates_once_and_validates() {
    let t = start(common::config()).await;
    assert_eq!(
        register(&t, "alice", "secret-pw").await,
        (201, json!({"uid": "alice"}))
    );

    let (status, body) = register(&t, "alice", "other-pw").await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "username_taken");

    let (status, body) = register(&t, "bad name", "secret-pw").await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("username"), "{body}");

    let (status, body) = register(&t, &"a".repeat(65), "secret-pw").await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = register(&t, "bob", "12345").await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("password"), "{body}");
}

#[tokio::test]
async fn login_issues_a_token_and_refuses_bad_credentials() {
    let t = start(common::config()).await;
    register(&t, "alice", "secret-pw").await;

    let (status, body) = login(&t, "alice", "secret-pw").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uid"], "alice");
    assert_eq!(body["heartbeat_secs"], 30);
    assert_eq!(body["expires_in"], 24 * 3600);
    assert_eq!(body["comets"], json!([]));
    let claims = TokenKeys::new(SECRET.as_bytes())
        .verify(body["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.sub, "alice");

    let (wrong_pw, wrong_pw_body) = login(&t, "alice", "not-the-pw").await;
    let (no_user, no_user_body) = login(&t, "nobody", "secret-pw").await;
    assert_eq!((wrong_pw, no_user), (401, 401));
    assert_eq!(
        error_message(&wrong_pw_body),
        error_message(&no_user_body),
        "same message for unknown user and wrong password"
    );
}

fn comet(id: &str, connections: u32, state: NodeState) -> CometNode {
    CometNode {
        id: id.into(),
        tcp: format!("127.0.0.1:{}1", connections),
        ws: format!("127.0.0.1:{}2", connections),
        grpc: format!("127.0.0.1:{}9", connections),
        weight: 1,
        connections,
        state,
    }
}

#[tokio::test]
async fn login_and_nodes_list_ranked_comets_from_discovery() {
    let t = start(common::config()).await;
    register(&t, "alice", "secret-pw").await;
    let discovery = t.backends.discovery.clone();
    let _busy = register_json(
        discovery.as_ref(),
        ServiceKind::Comet,
        "busy",
        &comet("busy", 50, NodeState::Serving),
    )
    .await
    .unwrap();
    let _idle = register_json(
        discovery.as_ref(),
        ServiceKind::Comet,
        "idle",
        &comet("idle", 3, NodeState::Serving),
    )
    .await
    .unwrap();
    let _drain = register_json(
        discovery.as_ref(),
        ServiceKind::Comet,
        "drain",
        &comet("drain", 0, NodeState::Draining),
    )
    .await
    .unwrap();

    // The view follows discovery asynchronously: poll until it caught up.
    let body = courier_testkit::until_some("the comet view", courier_testkit::PATIENCE, || async {
        let (status, body) = login(&t, "alice", "secret-pw").await;
        assert_eq!(status, 200);
        (body["comets"].as_array().unwrap().len() == 2).then_some(body)
    })
    .await;
    assert_eq!(
        body["comets"],
        json!([
            {"id": "idle", "tcp": "127.0.0.1:31", "ws": "127.0.0.1:32"},
            {"id": "busy", "tcp": "127.0.0.1:501", "ws": "127.0.0.1:502"},
        ])
    );

    // /nodes accepts the user's own token.
    let token = body["token"].as_str().unwrap();
    let r = t
        .client
        .get(t.url("/nodes"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, nodes) = json(r).await;
    assert_eq!(status, 200);
    assert_eq!(nodes[0]["id"], "idle");
    assert_eq!(nodes[0]["connections"], 3);
    assert_eq!(nodes[0]["state"], "serving");
    assert_eq!(nodes.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn push_requires_the_api_key() {
    let t = start(common::config()).await;
    let body = json!({"uids": ["alice"], "op": 1, "data": "hi"});
    let no_auth = t
        .client
        .post(t.url("/push/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, err) = json(no_auth).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&err), "unauthorized");

    let wrong = t
        .client
        .post(t.url("/push/users"))
        .bearer_auth("not-the-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // A user's token is not enough to push.
    let token = TokenKeys::new(SECRET.as_bytes())
        .issue("alice", Duration::from_secs(60))
        .unwrap();
    let user = t
        .client
        .post(t.url("/push/users"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 401);

    let (status, ok) = json(t.push("/push/users", body).await).await;
    assert_eq!(status, 202, "{ok}");
    assert!(ok["msg_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let mut config = common::config();
    config.body_limit = 1024;
    let t = start(config).await;

    let malformed = t
        .client
        .post(t.url("/push/users"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{\"uids\": [")
        .send()
        .await
        .unwrap();
    let (status, body) = json(malformed).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "malformed_json");
    assert!(!error_message(&body).is_empty());

    let (status, body) = json(t.push("/push/users", json!({"uids": ["a"], "op": 1})).await).await;
    assert_eq!(status, 422);
    assert!(error_message(&body).contains("data"), "{body}");

    let (status, body) = json(t.push("/push/users", json!({"uids": [], "data": 1})).await).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("uids"), "{body}");

    let big = "x".repeat(4096);
    let (status, body) = json(t.push("/push/all", json!({"data": big})).await).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "body_too_large");

    let not_json = t
        .client
        .post(t.url("/login"))
        .body("username=a")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);

    let (status, body) = json(t.client.get(t.url("/nope")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");

    let (status, body) = json(t.client.get(t.url("/login")).send().await.unwrap()).await;
    assert_eq!(status, 405);
    assert_eq!(error_code(&body), "method_not_allowed");

    let r = t
        .client
        .get(t.url("/online/users?limit=many"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_query");

    let health = t
        .client
        .get(format!("{}/healthz", t.http))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn register_and_login_are_rate_limited_per_ip() {
    let mut config = common::config();
    config.auth_rate_per_minute = 2;
    let t = start(config).await;
    assert_eq!(register(&t, "alice", "secret-pw").await.0, 201);
    assert_eq!(login(&t, "alice", "secret-pw").await.0, 200);
    let (status, body) = login(&t, "alice", "secret-pw").await;
    assert_eq!(status, 429);
    assert_eq!(error_code(&body), "rate_limited");
    // Push routes are not limited by it.
    let (status, _) = json(t.push("/push/all", json!({"data": 1})).await).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn one_users_logins_are_limited_without_locking_out_others_at_its_address() {
    let mut config = common::config();
    config.login_rate_per_user_per_minute = 2;
    let t = start(config).await;
    for user in ["alice", "bob"] {
        assert_eq!(register(&t, user, "secret-pw").await.0, 201);
    }
    // Someone guessing alice's password from this address.
    assert_eq!(login(&t, "alice", "wrong-pw").await.0, 401);
    assert_eq!(login(&t, "alice", "wrong-pw").await.0, 401);
    let (status, body) = login(&t, "alice", "secret-pw").await;
    assert_eq!(status, 429, "{body}");
    // bob, behind the same address (an office NAT), still gets in.
    assert_eq!(login(&t, "bob", "secret-pw").await.0, 200);
}

#[tokio::test]
async fn a_name_that_cannot_exist_is_refused_without_taking_a_login_budget() {
    let mut config = common::config();
    config.login_rate_per_user_per_minute = 2;
    let t = start(config).await;
    // Names no account can have (one far too long): each is wrong
    // credentials, every time, and none is remembered by the limiter.
    let long = "x".repeat(60 * 1024);
    for name in ["not a name", long.as_str()] {
        for _ in 0..3 {
            let (status, body) = login(&t, name, "secret-pw").await;
            assert_eq!(status, 401, "{body}");
            assert_eq!(error_code(&body), "bad_credentials");
        }
    }
}

#[tokio::test]
async fn user_push_publishes_one_envelope_per_comet() {
    let t = start(common::config()).await;
    let sessions = &t.backends.sessions;
    sessions.add(&session("alice", "k1", "c1")).await.unwrap();
    sessions.add(&session("alice", "k2", "c2")).await.unwrap();
    sessions.add(&session("alice", "k3", "c2")).await.unwrap();
    sessions.add(&session("bob", "k4", "c1")).await.unwrap();
    let consumer = t.backends.queue.subscribe("test").await.unwrap();

    let (status, body) = json(
        t.push(
            "/push/users",
            json!({"uids": ["alice"], "op": 7, "data": {"text": "hi"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202);
    let msg_id = body["msg_id"].as_str().unwrap().to_owned();
    // A second push to the same key marks the end of the first one's envelopes.
    t.push(
        "/push/users",
        json!({"uids": ["alice"], "op": 99, "data": null}),
    )
    .await;

    let mut got = envelopes_until_op(consumer.as_ref(), 99).await;
    got.sort_by_key(|(_, kind)| match kind {
        Kind::Keys(k) => k.comet_id.clone(),
        _ => String::new(),
    });
    assert_eq!(got.len(), 2, "{got:?}");
    let expected = [("c1", vec!["k1"]), ("c2", vec!["k2", "k3"])];
    for ((key, kind), (comet, keys)) in got.iter().zip(expected) {
        assert_eq!(key.as_deref(), Some("alice"));
        let Kind::Keys(push) = kind else {
            panic!("expected KeysPush, got {kind:?}")
        };
        assert_eq!(push.comet_id, comet);
        assert_eq!(push.keys, keys);
        let m = &decoded(&push.message);
        assert_eq!(m.msg_id, msg_id);
        assert_eq!(m.op, 7);
        assert_eq!(m.from, "");
        assert_eq!(m.to, Some(Target::user("alice")));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&m.data).unwrap(),
            json!({"text": "hi"})
        );
        assert!(m.sent_at_ms > 0);
    }

    // Offline users are accepted and produce nothing.
    let (status, _) = json(
        t.push("/push/users", json!({"uids": ["nobody"], "data": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 202);

    // A key push reaches only that connection.
    t.push("/push/keys", json!({"keys": ["k3"], "op": 5, "data": "x"}))
        .await;
    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("k3"));
    let Kind::Keys(push) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        (push.comet_id.as_str(), push.keys),
        ("c2", vec!["k3".to_owned()])
    );
}

#[tokio::test]
async fn room_push_targets_only_comets_holding_the_room() {
    let t = start(common::config()).await;
    let sessions = &t.backends.sessions;
    sessions.add_room_comet("lobby", "c1").await.unwrap();
    sessions.add_room_comet("lobby", "c3").await.unwrap();
    sessions.add_room_comet("other", "c2").await.unwrap();
    let consumer = t.backends.queue.subscribe("test").await.unwrap();

    // Nobody holds "empty": accepted, nothing published.
    let (status, _) = json(
        t.push("/push/rooms/empty", json!({"op": 1, "data": "lost"}))
            .await,
    )
    .await;
    assert_eq!(status, 202);

    let (status, _) = json(
        t.push("/push/rooms/lobby", json!({"op": 2, "data": "hello"}))
            .await,
    )
    .await;
    assert_eq!(status, 202);
    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("lobby"));
    let Kind::Room(push) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(push.room, "lobby");
    assert_eq!(push.comet_ids, ["c1", "c3"]);
    let m = decoded(&push.message);
    assert_eq!((m.op, m.to), (2, Some(Target::room("lobby"))));
    assert_eq!(&m.data[..], b"\"hello\"");

    t.push("/push/all", json!({"op": 3, "data": 1, "rate": 500}))
        .await;
    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("all"));
    let Kind::Broadcast(b) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(b.rate, 500);
    assert_eq!(decoded(&b.message).to, Some(Target::all()));
}

#[tokio::test]
async fn run_registers_and_deregisters_in_discovery() {
    let t = start(common::config()).await;
    let mut logics = t
        .backends
        .discovery
        .watch(ServiceKind::Logic)
        .await
        .unwrap();
    let http = t.http.trim_start_matches("http://").to_owned();
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        logics.wait_for(|v| v.values().any(|json| json.contains(&http))),
    )
    .await
    .is_ok();
    assert!(seen, "logic never registered");
    let backends = t.backends.clone();
    drop(logics);
    t.stop().await.unwrap();
    let mut logics = backends.discovery.watch(ServiceKind::Logic).await.unwrap();
    let gone =
        tokio::time::timeout(Duration::from_secs(5), logics.wait_for(|v| v.is_empty())).await;
    assert!(gone.is_ok(), "logic still registered after stop");
}

/// A queue that refuses every publish, as a broker that is down would.
struct DownQueue;

#[async_trait::async_trait]
impl courier_cluster::Queue for DownQueue {
    async fn publish(&self, _: &str, _: bytes::Bytes) -> courier_cluster::Result<()> {
        Err(courier_cluster::Error::Unavailable {
            backend: "queue",
            message: "broker down".into(),
        })
    }
    async fn subscribe(
        &self,
        _: &str,
    ) -> courier_cluster::Result<Box<dyn courier_cluster::Consumer>> {
        Err(courier_cluster::Error::Closed)
    }
    fn health(&self) -> tokio::sync::watch::Receiver<courier_cluster::queue::QueueHealth> {
        let down = courier_cluster::queue::QueueHealth {
            reachable: false,
            losses: 0,
        };
        tokio::sync::watch::channel(down).1
    }
}

#[tokio::test]
async fn queue_failure_is_a_503_not_a_202() {
    let mut backends =
        courier_cluster::Backends::connect(&courier_cluster::config::ClusterConfig::default())
            .await
            .unwrap();
    backends.queue = std::sync::Arc::new(DownQueue);
    let t = common::start_with(common::config(), backends).await;
    let response = t.push("/push/all", json!({"data": 1})).await;
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let (status, body) = json(response).await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&body), "unavailable");
    // The backend's own words stay in the log.
    assert!(!body.to_string().contains("broker down"), "{body}");
}

#[tokio::test]
async fn data_too_large_for_a_frame_is_413() {
    let mut cfg = common::config();
    cfg.max_data = 100;
    let t = start(cfg).await;
    let (status, body) = json(t.push("/push/all", json!({"data": "x".repeat(200)})).await).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "data_too_large");
    assert!(error_message(&body).contains("at most 100"), "{body}");
    let (status, _) = json(t.push("/push/all", json!({"data": "small"})).await).await;
    assert_eq!(status, 202);
    t.stop().await.unwrap();
}
