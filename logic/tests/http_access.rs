//! Who may read and push what over HTTP: a user's login token, and named
//! API keys with their scopes, against memory backends.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{json, session, start, API_KEY, SECRET};
use courier_runtime::TokenKeys;
use serde_json::json;

async fn get_with(t: &common::TestLogic, path: &str, bearer: &str) -> (u16, serde_json::Value) {
    json(
        t.client
            .get(t.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_user_token_reads_presence_and_nodes_but_no_listing() {
    let mut cfg = common::config();
    cfg.user_reads_per_minute = 3;
    let t = start(cfg).await;
    let sessions = &t.backends.sessions;
    sessions.add(&session("alice", "k1", "c1")).await.unwrap();
    sessions.add(&session("bob", "k2", "c1")).await.unwrap();
    let token = TokenKeys::new(SECRET.as_bytes())
        .issue("alice", Duration::from_secs(60))
        .unwrap();

    // The full listings need a key with the read scope.
    for path in [
        "/online",
        "/online/users",
        "/online/rooms",
        "/online/rooms/lobby",
    ] {
        let (status, body) = get_with(&t, path, &token).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, body) = get_with(&t, "/presence?uids=alice,carol,bob", &token).await;
    assert_eq!((status, body), (200, json!({"online": ["alice", "bob"]})));
    let (status, _) = get_with(&t, "/nodes", &token).await;
    assert_eq!(status, 200);
    let (status, body) = get_with(&t, "/presence?uids=", &token).await;
    assert_eq!(status, 400, "{body}");
    // Three reads a minute for this user, then 429; a key is not limited.
    let (status, body) = get_with(&t, "/presence?uids=alice", &token).await;
    assert_eq!(status, 429, "{body}");
    let (status, _) = get_with(&t, "/presence?uids=alice", API_KEY).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn api_keys_grant_only_their_scopes_and_rotate() {
    let mut cfg = common::config();
    cfg.api_key = String::new();
    cfg.api_keys = vec![
        courier_logic::ApiKeyConfig {
            name: "pusher-old".into(),
            key: "push-key-old-0123456789".into(),
            scopes: vec![courier_logic::Scope::Push],
        },
        courier_logic::ApiKeyConfig {
            name: "pusher-new".into(),
            key: "push-key-new-0123456789".into(),
            scopes: vec![courier_logic::Scope::Push],
        },
        courier_logic::ApiKeyConfig {
            name: "dashboard".into(),
            key: "read-key-0123456789".into(),
            scopes: vec![courier_logic::Scope::Read],
        },
    ];
    let t = start(cfg).await;
    let push = |key: &'static str| {
        t.client
            .post(t.url("/push/all"))
            .bearer_auth(key)
            .json(&json!({"data": 1}))
            .send()
    };
    // Both push keys work at once: callers move from the old to the new.
    assert_eq!(push("push-key-old-0123456789").await.unwrap().status(), 202);
    assert_eq!(push("push-key-new-0123456789").await.unwrap().status(), 202);
    assert_eq!(push("read-key-0123456789").await.unwrap().status(), 401);
    let (status, _) = get_with(&t, "/online", "read-key-0123456789").await;
    assert_eq!(status, 200);
    let (status, _) = get_with(&t, "/online", "push-key-new-0123456789").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn online_routes_take_a_read_key() {
    let t = start(common::config()).await;
    let sessions = &t.backends.sessions;
    sessions.add(&session("alice", "k1", "c1")).await.unwrap();
    sessions.add(&session("bob", "k2", "c1")).await.unwrap();

    let r = t.client.get(t.url("/online")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (status, body) = get_with(&t, "/online", API_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"], 2);

    let r = t
        .client
        .get(t.url("/online/users?limit=1"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(status, 200);
    assert_eq!(body["users"], json!(["alice"]));
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let r = t
        .client
        .get(t.url(&format!("/online/users?limit=10&cursor={cursor}")))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let (_, body) = json(r).await;
    assert_eq!(body["users"], json!(["bob"]));

    let r = t
        .client
        .get(t.url("/online/rooms/lobby"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(
        (status, body),
        (200, json!({"room": "lobby", "connections": 0}))
    );

    let r = t
        .client
        .get(t.url("/online/rooms?top=5"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!((status, body), (200, json!({"rooms": []})));
}
