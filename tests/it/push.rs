//! Backend pushes through logic -> queue -> job -> comet -> SDK, on the
//! embedded backends.

#![allow(clippy::unwrap_used)]

use crate::support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn push_to_a_user_reaches_every_device() {
    let system = start(2).await;
    let api = Api::new(&system);
    let (_phone, mut phone_events) = user(&system, "alice").await;
    let (_laptop, mut laptop_events) = device(&system, "alice", &[]).await;
    let (_bob, mut bob_events) = user(&system, "bob").await;

    let (status, reply) = api
        .post(
            "/push/users",
            json!({"uids": ["alice"], "op": 1001, "data": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    for events in [&mut phone_events, &mut laptop_events] {
        let m = next_message(events).await;
        assert_eq!(m.op, 1001);
        assert_eq!(text(&m), r#"{"n":1}"#);
        assert_eq!(m.msg_id, reply["msg_id"].as_str().unwrap());
    }
    // bob got nothing: the next thing he sees is a push addressed to him.
    api.post(
        "/push/users",
        json!({"uids": ["bob"], "op": 1, "data": "for bob"}),
    )
    .await;
    next_message_is(&mut bob_events, br#""for bob""#).await;
    system.stop().await;
}

#[tokio::test]
async fn push_to_a_key_reaches_that_device_only() {
    let system = start(1).await;
    let api = Api::new(&system);
    let (phone, mut phone_events) = user(&system, "alice").await;
    let (_laptop, mut laptop_events) = device(&system, "alice", &[]).await;

    let key = phone.key().expect("connected");
    let (status, _) = api
        .post(
            "/push/keys",
            json!({"keys": [key], "op": 7, "data": "phone only"}),
        )
        .await;
    assert_eq!(status, 202);
    next_message_is(&mut phone_events, br#""phone only""#).await;
    api.post(
        "/push/users",
        json!({"uids": ["alice"], "op": 7, "data": "both"}),
    )
    .await;
    next_message_is(&mut laptop_events, br#""both""#).await;
    next_message_is(&mut phone_events, br#""both""#).await;
    system.stop().await;
}

#[tokio::test]
async fn push_to_a_room_reaches_its_members_only() {
    let system = start(1).await;
    let api = Api::new(&system);
    let (_a, mut a_events) = user(&system, "alice").await;
    let (b, mut b_events) = user(&system, "bob").await;
    let (_c, mut c_events) = user(&system, "carol").await;
    _a.join("news").await.expect("join");
    b.join("news").await.expect("join");

    let (status, _) = api
        .post("/push/rooms/news", json!({"op": 1002, "data": "headline"}))
        .await;
    assert_eq!(status, 202);
    for events in [&mut a_events, &mut b_events] {
        let m = next_message_is(events, br#""headline""#).await;
        assert_eq!(m.to, Some(courier_proto::client::Target::room("news")));
    }
    api.post(
        "/push/users",
        json!({"uids": ["carol"], "op": 1, "data": "direct"}),
    )
    .await;
    next_message_is(&mut c_events, br#""direct""#).await;
    system.stop().await;
}

#[tokio::test]
async fn push_to_all_reaches_everyone_on_every_comet() {
    let system = start(2).await;
    let api = Api::new(&system);
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        clients.push(user(&system, name).await);
    }
    let (status, _) = api
        .post(
            "/push/all",
            json!({"op": 9, "data": {"notice": "maintenance"}}),
        )
        .await;
    assert_eq!(status, 202);
    for (_, events) in &mut clients {
        next_message_is(events, br#"{"notice":"maintenance"}"#).await;
    }
    system.stop().await;
}

#[tokio::test]
async fn online_counts_follow_connections_and_rooms() {
    let system = start(1).await;
    let api = Api::new(&system);
    let (alice, _ae) = user(&system, "alice").await;
    let (_alice2, _ae2) = device(&system, "alice", &["lobby"]).await;
    let (bob, _be) = user(&system, "bob").await;
    alice.join("lobby").await.expect("join");
    bob.join("lobby").await.expect("join");
    bob.join("dev").await.expect("join");

    let online = api
        .wait_for("/online", |b| b["connections"] == 3 && b["users"] == 2)
        .await;
    assert_eq!(online["comets"][0]["connections"], 3);
    api.wait_for("/online/rooms/lobby", |b| b["connections"] == 3)
        .await;
    let top = api
        .wait_for("/online/rooms?top=1", |b| b["rooms"][0]["room"] == "lobby")
        .await;
    assert_eq!(top["rooms"].as_array().map(Vec::len), Some(1));
    let users = api
        .wait_for("/online/users", |b| {
            b["users"].as_array().map(Vec::len) == Some(2)
        })
        .await;
    assert_eq!(users["users"], json!(["alice", "bob"]));

    bob.close().await;
    api.wait_for("/online", |b| b["connections"] == 2 && b["users"] == 1)
        .await;
    api.wait_for("/online/rooms/dev", |b| b["connections"] == 0)
        .await;
    system.stop().await;
}
