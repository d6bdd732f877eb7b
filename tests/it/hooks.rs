//! The application's hooks, against a small HTTP application this test
//! starts ([`support::hook_app`]): connect (its own credentials for a
//! Courier token), join (who else enters an `app` room), publish (refuse or
//! rewrite a client's message before it is stored) and the offline webhook
//! (messages for users with no connection, in batches). Every request the
//! application gets must carry a valid signature.

#![allow(clippy::unwrap_used)]

use crate::support;

use bytes::Bytes;
use courier_proto::client::ErrorCode;
use serde_json::json;
use support::hook_app::HookApp;
use support::*;

/// A system whose hooks call a fresh application.
async fn start_with_app() -> (courier::System, std::sync::Arc<HookApp>) {
    let (app, base) = HookApp::start().await;
    let mut config = support::config();
    config.logic.hooks = HookApp::hooks(&base);
    (start_with(config, 1).await, app)
}

fn code_of(e: &courier_client::ClientError) -> i32 {
    match e {
        courier_client::ClientError::Server { code, .. } => *code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_connect_hook_turns_the_applications_credentials_into_a_token() {
    let (system, app) = start_with_app().await;
    let api = Api::new(&system);
    let (status, body) = api
        .post_public("/connect", json!({"credentials": "good-cookie"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["uid"].as_str(), body["rooms"].clone()),
        (Some("dana"), json!(["lobby"]))
    );
    assert!(body["expires_in"].as_u64().unwrap() <= 60, "{body}");
    let mut c = courier_testkit::FrameClient::connect(system.comets[0].tcp).await;
    let reply = c.auth(body["token"].as_str().unwrap(), &["lobby"]).await;
    assert_eq!(
        (reply.uid.as_str(), reply.rooms.clone()),
        ("dana", vec!["lobby".to_owned()])
    );
    assert_eq!(app.calls.lock()[0].1["credentials"], "good-cookie");
    // The uid the application vouched for is known: others may send to it
    // once it is gone, and it has no password to log in with.
    drop(c);
    let (bob, _b) = user(&system, "bob").await;
    bob.send_to_user("dana", 1, Bytes::from_static(b"hi dana"))
        .await
        .expect("dana is known");
    let (status, _) = api
        .post_public(
            "/login",
            json!({"username": "dana", "password": "anything"}),
        )
        .await;
    assert_eq!(status, 401);

    for (credentials, want) in [("nope", 401), ("bad-uid", 503), ("hang", 503)] {
        let (status, body) = api
            .post_public("/connect", json!({ "credentials": credentials }))
            .await;
        assert_eq!(status, want, "{credentials}: {body}");
    }
    let long = "x".repeat(4097);
    for body in [json!({"credentials": ""}), json!({ "credentials": long })] {
        assert_eq!(api.post_public("/connect", body).await.0, 400);
    }
    assert_eq!(*app.forged.lock(), 0, "every request was signed");
    system.stop().await;
}

#[tokio::test]
async fn the_join_hook_decides_who_else_enters_an_app_room() {
    let (system, app) = start_with_app().await;
    let api = Api::new(&system);
    let (status, _) = api.put("/rooms/vip", json!({"join": "app"})).await;
    assert_eq!(status, 200);
    api.post("/rooms/vip/members", json!({"uids": ["erin"]}))
        .await;
    let (dana, _d) = user(&system, "dana").await;
    let (frank, _f) = user(&system, "frank").await;
    let (erin, _e) = user(&system, "erin").await;
    dana.join("vip").await.expect("the application admits dana");
    let refused = frank.join("vip").await.unwrap_err();
    assert_eq!(code_of(&refused), ErrorCode::NotAllowed as i32);
    let asked = app.calls_to("/join");
    erin.join("vip").await.expect("a member needs no hook");
    assert_eq!(app.calls_to("/join"), asked, "members are not asked about");
    assert_eq!(*app.forged.lock(), 0);
    system.stop().await;
}

#[tokio::test]
async fn the_publish_hook_refuses_or_rewrites_before_anything_is_stored() {
    let (system, app) = start_with_app().await;
    let api = Api::new(&system);
    let (alice, mut alice_events) = user(&system, "alice").await;
    let (bob, _b) = user(&system, "bob").await;
    let send =
        |text: &'static str| bob.send_to_user("alice", 1, Bytes::from_static(text.as_bytes()));

    send("hello").await.unwrap();
    next_message_is(&mut alice_events, b"hello").await;
    send("shout hi there").await.unwrap();
    next_message_is(&mut alice_events, b"HI THERE").await;
    let refused = send("a bad word").await.unwrap_err();
    assert_eq!(code_of(&refused), ErrorCode::Rejected as i32);
    assert!(
        refused.to_string().contains("watch your language"),
        "{refused}"
    );
    // No answer in time, and on_failure = refuse: try again later.
    let unanswered = send("hang").await.unwrap_err();
    assert_eq!(code_of(&unanswered), ErrorCode::Unavailable as i32);

    let (_, page) = api.get("/users/alice/messages").await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["data"].as_str())
        .collect();
    assert_eq!(texts, ["hello", "HI THERE"], "nothing refused was stored");
    let ask = &app
        .calls
        .lock()
        .iter()
        .find(|(p, _)| p == "/publish")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        (ask["from"].as_str(), ask["to"].clone()),
        (Some("bob"), json!({"user": "alice"}))
    );
    assert_eq!(*app.forged.lock(), 0);
    alice.close().await;
    system.stop().await;
}

#[tokio::test]
async fn messages_for_users_with_no_connection_reach_the_offline_webhook() {
    let (system, app) = start_with_app().await;
    let api = Api::new(&system);
    let (_online, mut online_events) = user(&system, "gina").await;
    let arrived = app.offline_arrived.notified();
    tokio::pin!(arrived);
    arrived.as_mut().enable();
    for uid in ["gina", "hank"] {
        let (status, body) = api
            .post(
                "/push/users",
                json!({"uids": [uid], "op": 3, "data": {"n": 1}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    next_message_is(&mut online_events, br#"{"n":1}"#).await;
    tokio::time::timeout(courier_testkit::PATIENCE, arrived)
        .await
        .expect("a batch within the deadline");
    let offline = app.offline.lock().clone();
    assert_eq!(
        offline.len(),
        1,
        "only the user with no connection: {offline:?}"
    );
    let m = &offline[0];
    assert_eq!(
        (
            m["uid"].as_str(),
            m["seq"].as_u64(),
            m["op"].as_u64(),
            m["data"].as_str()
        ),
        (Some("hank"), Some(1), Some(3), Some(r#"{"n":1}"#))
    );
    assert!(m["msg_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(*app.forged.lock(), 0);
    system.stop().await;
}

#[tokio::test]
async fn the_sdk_connects_with_the_applications_credentials() {
    let (system, _app) = start_with_app().await;
    let api = Api::new(&system);
    let config = courier_client::ClientConfig::new(system.logic_url(), "", "");
    let (dana, mut events) =
        courier_client::Client::connect_with_credentials(config.clone(), "good-cookie")
            .await
            .expect("the application vouches for the cookie");
    assert_eq!(dana.uid(), "dana");
    // In the room the application named.
    let (status, _) = api
        .post("/push/rooms/lobby", json!({"data": "to the lobby"}))
        .await;
    assert_eq!(status, 202);
    next_message_is(&mut events, b"\"to the lobby\"").await;
    let refused = courier_client::Client::connect_with_credentials(config, "stolen")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, courier_client::ClientError::Unauthorized),
        "{refused:?}"
    );
    dana.close().await;
    system.stop().await;
}

#[tokio::test]
async fn the_connect_hook_cannot_hand_out_a_password_accounts_uid() {
    let (system, _app) = start_with_app().await;
    let api = Api::new(&system);
    // Someone registered "dana" with a password before the application's
    // dana ever connected: the hook's answer must not give them away.
    let (status, _) = api
        .post_public(
            "/users",
            json!({"username": "dana", "password": "squatter-pw"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = api
        .post_public("/connect", json!({"credentials": "good-cookie"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("uid_registered")),
        "{body}"
    );
    system.stop().await;
}
