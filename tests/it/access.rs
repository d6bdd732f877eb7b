//! Who may stay connected: a logout revokes its token, a password change
//! revokes every older token, and an operator can revoke them all; each
//! takes effect on every comet, on live connections and on the next `Auth`
//! or `Refresh`.

#![allow(clippy::unwrap_used)]

use crate::support;

use courier_proto::client::frame::Body;
use courier_proto::client::{ErrorCode, Heartbeat, Refresh};
use courier_testkit::FrameClient;
use serde_json::{json, Value};
use support::*;

/// Logs in `name` (registered): a fresh token.
async fn login(api: &Api, name: &str, password: &str) -> (u16, Value) {
    api.post_public("/login", json!({"username": name, "password": password}))
        .await
}

/// A connection authenticated with `token` to `comet`.
async fn connected(system: &courier::System, comet: usize, token: &str) -> FrameClient {
    let mut c = FrameClient::connect(system.comets[comet].tcp).await;
    c.auth(token, &[]).await;
    c
}

/// Waits for `c` to be kicked with `reason` and closed.
async fn kicked(c: &mut FrameClient, reason: &str) {
    let frame = c.recv().await;
    let Some(Body::Kick(kick)) = frame.body else {
        panic!("expected a Kick, got {frame:?}")
    };
    assert_eq!(kick.reason, reason);
    c.expect_closed().await;
}

/// An `Auth` with `token` is refused as revoked.
async fn refused_as_revoked(system: &courier::System, token: &str) {
    let mut c = FrameClient::connect(system.comets[0].tcp).await;
    c.send(
        1,
        Body::Auth(courier_proto::client::Auth {
            token: token.to_owned(),
            ..Default::default()
        }),
    )
    .await;
    c.expect_error(ErrorCode::TokenRevoked).await;
    c.expect_closed().await;
}

/// The connection is still served.
async fn alive(c: &mut FrameClient) {
    c.send(77, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(c.recv().await.id, 77);
}

#[tokio::test]
async fn a_logout_closes_that_tokens_connections_on_every_comet_and_no_other() {
    let system = start(2).await;
    let api = Api::new(&system);
    let a = token(&system, "alice").await;
    let (_, other) = login(&api, "alice", PASSWORD).await;
    let b = other["token"].as_str().unwrap().to_owned();
    let mut with_a = vec![
        connected(&system, 0, &a).await,
        connected(&system, 1, &a).await,
    ];
    let mut with_b = connected(&system, 0, &b).await;

    let asked = tokio::time::Instant::now();
    let (status, body) = api
        .post_raw("/logout", Some(&format!("Bearer {a}")), "")
        .await;
    assert_eq!(status, 204, "{body}");
    for c in &mut with_a {
        kicked(c, "token revoked").await;
    }
    eprintln!(
        "logout: both connections (two comets) closed {:?} after the request",
        asked.elapsed()
    );
    alive(&mut with_b).await;
    refused_as_revoked(&system, &a).await;
    // The revoked token cannot replace a live one either.
    with_b
        .send(5, Body::Refresh(Refresh { token: a.clone() }))
        .await;
    assert_eq!(with_b.expect_error(ErrorCode::TokenRevoked).await.id, 5);
    alive(&mut with_b).await;
    // Nor read presence, nor log out twice.
    let (status, body) = api
        .post_raw("/logout", Some(&format!("Bearer {a}")), "")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_revoked"))
    );
    system.stop().await;
}

#[tokio::test]
async fn a_password_change_revokes_every_older_token() {
    let system = start(2).await;
    let api = Api::new(&system);
    let a = token(&system, "alice").await;
    let (_, other) = login(&api, "alice", PASSWORD).await;
    let b = other["token"].as_str().unwrap().to_owned();
    let mut conns = vec![
        connected(&system, 0, &a).await,
        connected(&system, 1, &b).await,
    ];
    let change =
        |old: &str, new: &str| json!({"old_password": old, "new_password": new}).to_string();

    // A wrong current password changes and revokes nothing.
    let (status, _) = api
        .post_raw(
            "/password",
            Some(&format!("Bearer {b}")),
            &change("wrong one", "new secret"),
        )
        .await;
    assert_eq!(status, 401);
    for c in &mut conns {
        alive(c).await;
    }
    let (status, body) = api
        .post_raw(
            "/password",
            Some(&format!("Bearer {b}")),
            &change("x", "short"),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = api
        .post_raw(
            "/password",
            Some(&format!("Bearer {b}")),
            &change(PASSWORD, "new secret"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let c = body["token"].as_str().unwrap().to_owned();
    for conn in &mut conns {
        kicked(conn, "token revoked").await;
    }
    refused_as_revoked(&system, &a).await;
    refused_as_revoked(&system, &b).await;
    // The new token, and the new password, work; the old password does not.
    let mut fresh = connected(&system, 1, &c).await;
    alive(&mut fresh).await;
    assert_eq!(login(&api, "alice", PASSWORD).await.0, 401);
    assert_eq!(login(&api, "alice", "new secret").await.0, 200);
    system.stop().await;
}

#[tokio::test]
async fn an_operator_revokes_every_token_of_a_user_even_one_a_backend_minted() {
    let system = start(1).await;
    let api = Api::new(&system);
    // A backend's own token: no id, so it cannot log out alone.
    let minted = courier_runtime::TokenKeys::new(system.config.auth.jwt_secret.as_bytes())
        .sign(&courier_runtime::Claims {
            sub: "bob".into(),
            iat: 1,
            exp: u64::MAX / 4,
            jti: None,
            iat_ms: None,
        })
        .unwrap();
    let (status, body) = api
        .post_raw("/logout", Some(&format!("Bearer {minted}")), "")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("token_has_no_id"))
    );
    let mut conn = connected(&system, 0, &minted).await;
    let (status, body) = api
        .post(
            "/users/bob/disconnect",
            json!({"reason": "banned", "revoke_tokens": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let frame = conn.recv().await;
    assert!(matches!(frame.body, Some(Body::Kick(_))), "{frame:?}");
    conn.expect_closed().await;
    refused_as_revoked(&system, &minted).await;
    system.stop().await;
}

#[tokio::test]
async fn an_sdk_client_logs_out_and_the_users_other_device_stays() {
    let system = start(2).await;
    let api = Api::new(&system);
    let (phone, mut phone_events) = user(&system, "carol").await;
    let (laptop, mut laptop_events) = device(&system, "carol", &[]).await;
    phone.logout().await.unwrap();
    // The phone's client is closed; its events end.
    let ended = tokio::time::timeout(courier_testkit::PATIENCE, async {
        while phone_events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the logged-out client's events end");
    let (status, body) = api
        .post(
            "/push/users",
            json!({"uids": ["carol"], "data": "still here"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    next_message_is(&mut laptop_events, b"\"still here\"").await;
    laptop.close().await;
    system.stop().await;
}

/// The next event that is not about the connection (connected, missed).
async fn next_room_event(events: &mut courier_client::Events) -> courier_client::Event {
    use courier_client::Event;
    loop {
        let event = tokio::time::timeout(courier_testkit::PATIENCE, events.recv())
            .await
            .expect("an event in time")
            .expect("the client is open");
        match event {
            Event::Connected { .. } | Event::Missed { .. } => continue,
            other => return other,
        }
    }
}

fn not_allowed(e: &courier_client::ClientError) -> bool {
    matches!(e, courier_client::ClientError::Server { code, .. }
        if *code == ErrorCode::NotAllowed as i32)
}

#[tokio::test]
async fn a_members_room_admits_its_members_only_and_a_removal_takes_effect_at_once() {
    use courier_client::Event;
    let system = start(2).await;
    let api = Api::new(&system);
    let put = |room: &str, rule: &str| {
        let (api, room, rule) = (&api, room.to_owned(), rule.to_owned());
        async move {
            api.put(&format!("/rooms/{room}"), json!({ "join": rule }))
                .await
        }
    };
    let (status, body) = put("team", "members").await;
    assert_eq!((status, body["own"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) = api
        .post("/rooms/team/members", json!({"uids": ["alice"]}))
        .await;
    assert_eq!((status, body["added"].as_u64()), (200, Some(1)), "{body}");
    let (_, body) = api.get("/rooms/team").await;
    assert_eq!(
        (body["join"].as_str(), body["own"].as_bool()),
        (Some("members"), Some(true))
    );
    let (_, body) = api.get("/rooms/lobby").await;
    assert_eq!(
        (body["join"].as_str(), body["own"].as_bool()),
        (Some("open"), Some(false))
    );

    let (alice, mut alice_events) = {
        let _ = courier_client::register(&system.logic_url(), "alice", PASSWORD).await;
        device(&system, "alice", &["team"]).await
    };
    let (bob, _bob_events) = user(&system, "bob").await;
    // Bob is no member: he cannot join, nor send to the room.
    let refused = bob.join("team").await.unwrap_err();
    assert!(not_allowed(&refused), "{refused:?}");
    let refused = bob
        .send_to_room("team", 1, bytes::Bytes::from_static(b"let me in"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, courier_client::ClientError::Server { code, .. } if code == ErrorCode::Rejected as i32),
        "{refused:?}"
    );
    alice
        .send_to_room("team", 1, bytes::Bytes::from_static(b"members only"))
        .await
        .unwrap();
    next_message_is(&mut alice_events, b"members only").await;
    let (_, history) = api.get("/rooms/team/messages").await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["data"].as_str())
        .collect();
    assert_eq!(texts.len(), 1, "bob stored nothing: {history}");
    let (_, members) = api.get("/rooms/team/members").await;
    assert_eq!(members["members"], json!(["alice"]));

    // Removed: out of the room on its comet at once, and told.
    let asked = tokio::time::Instant::now();
    let (status, body) = api.delete("/rooms/team/members/alice").await;
    assert_eq!(
        (
            status,
            body["was_member"].as_bool(),
            body["connections"].as_u64()
        ),
        (200, Some(true), Some(1)),
        "{body}"
    );
    match next_room_event(&mut alice_events).await {
        Event::RemovedFromRoom { room } => assert_eq!(room, "team"),
        other => panic!("expected RemovedFromRoom, got {other:?}"),
    }
    eprintln!(
        "room removal: the member's connection was out {:?} after the request",
        asked.elapsed()
    );
    let (status, _) = api
        .post("/push/rooms/team", json!({"data": "after removal"}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = api
        .post("/push/users", json!({"uids": ["alice"], "data": "probe"}))
        .await;
    assert_eq!(status, 202);
    next_message_is(&mut alice_events, b"\"probe\"").await;
    let refused = alice.join("team").await.unwrap_err();
    assert!(not_allowed(&refused), "{refused:?}");
    system.stop().await;
}

#[tokio::test]
async fn configured_prefixes_give_rooms_their_rule_until_a_room_has_its_own() {
    let mut config = support::config();
    config.logic.room_rules = courier_logic::RoomRulesConfig {
        default: courier_cluster::JoinRule::Open,
        prefixes: vec![courier_logic::PrefixRule {
            prefix: "staff-".into(),
            join: courier_cluster::JoinRule::Members,
        }],
    };
    let system = start_with(config, 1).await;
    let api = Api::new(&system);
    let (carol, _events) = user(&system, "carol").await;
    carol.join("lobby").await.unwrap();
    assert!(not_allowed(&carol.join("staff-room").await.unwrap_err()));
    let (_, body) = api.get("/rooms/staff-room").await;
    assert_eq!(
        (body["join"].as_str(), body["own"].as_bool()),
        (Some("members"), Some(false))
    );
    // Its own rule wins over the prefix.
    let (status, _) = api.put("/rooms/staff-room", json!({"join": "open"})).await;
    assert_eq!(status, 200);
    carol.join("staff-room").await.unwrap();
    system.stop().await;
}

#[tokio::test]
async fn room_rule_and_member_requests_with_bad_input_are_refused() {
    let system = start(1).await;
    let api = Api::new(&system);
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    for (status, body) in [
        api.put("/rooms/team", json!({"join": "closed"})).await,
        api.put("/rooms/team", json!({"join": "open", "x": 1}))
            .await,
    ] {
        assert_eq!(status, 422, "{body}");
    }
    for (status, body) in [
        api.post("/rooms/team/members", json!({"uids": []})).await,
        api.post("/rooms/team/members", json!({"uids": many})).await,
        api.post("/rooms/team/members", json!({"uids": ["a\u{7}b"]}))
            .await,
        api.post("/rooms/a%07b/members", json!({"uids": ["x"]}))
            .await,
        api.get("/rooms/team/members?limit=0").await,
        api.get("/rooms/team/members?limit=1001").await,
        api.delete("/rooms/team/members/a%07b").await,
    ] {
        assert_eq!(status, 400, "{body}");
    }
    let (_, members) = api.get("/rooms/team/members").await;
    assert_eq!(members["members"], json!([]), "nothing was added");
    // Paging: after and next_after.
    let uids: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    api.post("/rooms/team/members", json!({ "uids": uids }))
        .await;
    let (_, page) = api.get("/rooms/team/members?limit=3").await;
    assert_eq!(
        (page["members"].clone(), page["next_after"].clone()),
        (json!(["m0", "m1", "m2"]), json!("m2"))
    );
    let (_, page) = api.get("/rooms/team/members?limit=3&after=m2").await;
    assert_eq!(
        (page["members"].clone(), page["next_after"].clone()),
        (json!(["m3", "m4"]), Value::Null)
    );
    let (status, _) = api
        .post_public("/rooms/team/members", json!({"uids": ["x"]}))
        .await;
    assert_eq!(status, 401);
    system.stop().await;
}
