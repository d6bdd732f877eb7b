//! Login policies end to end: `kick_old` closes a user's older devices when a
//! new one connects; `reject_new` refuses the new one instead.

#![allow(clippy::unwrap_used)]

use crate::support;

use courier_client::Event;
use courier_logic::LoginPolicy;
use courier_proto::client::{frame::Body, Auth, ErrorCode};
use courier_testkit::FrameClient;
use serde_json::json;
use support::*;

async fn start_with_policy(policy: LoginPolicy) -> courier::System {
    let mut config = config();
    config.logic.login_policy = policy;
    start_with(config, 2).await
}

#[tokio::test]
async fn kick_old_closes_the_older_device() {
    let system = start_with_policy(LoginPolicy::KickOld).await;
    let api = Api::new(&system);
    let (_old, mut old_events) = user(&system, "alice").await;
    let (_new, mut new_events) = device(&system, "alice", &[]).await;

    // The old device is told why and does not reconnect.
    let kicked = tokio::time::timeout(DEADLINE, async {
        loop {
            match old_events.recv().await {
                Some(Event::Kicked { reason }) => return reason,
                Some(_) => continue,
                None => panic!("events ended without a Kick"),
            }
        }
    })
    .await
    .expect("old device kicked");
    assert!(!kicked.is_empty());
    api.wait_for("/online", |b| b["connections"] == 1 && b["users"] == 1)
        .await;

    // The new device is the one that gets alice's pushes.
    api.post(
        "/push/users",
        json!({"uids": ["alice"], "op": 1, "data": "new only"}),
    )
    .await;
    next_message_is(&mut new_events, br#""new only""#).await;
    system.stop().await;
}

#[tokio::test]
async fn reject_new_refuses_a_second_device() {
    let system = start_with_policy(LoginPolicy::RejectNew).await;
    let api = Api::new(&system);
    let (_first, mut first_events) = user(&system, "alice").await;

    let (status, login) = api
        .post_public("/login", json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_eq!(status, 200);
    let mut second = FrameClient::connect(system.comets[1].tcp).await;
    let auth = Auth {
        token: login["token"].as_str().unwrap().to_owned(),
        ..Default::default()
    };
    second.send(1, Body::Auth(auth)).await;
    second.expect_error(ErrorCode::Rejected).await;
    second.expect_closed().await;

    // The first device is untouched.
    api.post(
        "/push/users",
        json!({"uids": ["alice"], "op": 1, "data": "still first"}),
    )
    .await;
    next_message_is(&mut first_events, br#""still first""#).await;
    system.stop().await;
}
