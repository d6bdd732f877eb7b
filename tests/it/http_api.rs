//! Accounts, API-key auth and error handling of logic's HTTP API.

#![allow(clippy::unwrap_used)]

use crate::support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn register_login_conflict_and_wrong_password() {
    let system = start(1).await;
    let api = Api::new(&system);

    let (status, body) = api
        .post_public("/users", json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["uid"], "alice");

    let (status, body) = api
        .post_public(
            "/users",
            json!({"username": "alice", "password": "another pass"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    let (status, body) = api
        .post_public("/login", json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uid"], "alice");
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["heartbeat_secs"].as_u64().is_some_and(|h| h > 0));
    let comets = body["comets"].as_array().expect("comets");
    assert_eq!(comets.len(), 1);
    assert_eq!(comets[0]["tcp"], system.comets[0].tcp.to_string());

    let (status, body) = api
        .post_public(
            "/login",
            json!({"username": "alice", "password": "wrong password"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = api
        .post_public(
            "/login",
            json!({"username": "nobody", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 401);
    system.stop().await;
}

#[tokio::test]
async fn push_requires_the_api_key() {
    let system = start(1).await;
    let api = Api::new(&system);
    let body = r#"{"uids":["alice"],"op":1,"data":"hi"}"#;

    let (status, reply) = api.post_raw("/push/users", None, body).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["error"]["message"].is_string(), "{reply}");
    let (status, _) = api
        .post_raw("/push/users", Some("Bearer not-the-key"), body)
        .await;
    assert_eq!(status, 401);
    let key = format!("Bearer {}", api.api_key);
    let (status, reply) = api.post_raw("/push/users", Some(&key), body).await;
    assert_eq!(status, 202, "{reply}");
    assert!(reply["msg_id"].is_string());
    system.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_with_a_message() {
    let system = start(1).await;
    let api = Api::new(&system);
    let key = format!("Bearer {}", api.api_key);
    for body in [
        r#"{"uids": ["alice"], "op": 1, "data": "#,
        "not json at all",
        r#"{"uids": "alice"}"#,
    ] {
        let (status, reply) = api.post_raw("/push/users", Some(&key), body).await;
        assert!(
            status == 400 || status == 422,
            "{body:?} gave {status} {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "no message for {body:?}: {reply}");
    }
    let (status, reply) = api.post_raw("/users", None, "{").await;
    assert_eq!(status, 400, "{reply}");
    system.stop().await;
}
