//! The first frame: `Auth` within the timeout, with a valid token.

use std::time::Duration;

use courier_proto::client::{frame::Body, Auth, ErrorCode, Heartbeat};
use courier_runtime::{Claims, TokenKeys};

use super::support::*;
use crate::logic_client::{LogicPool, LOGIC_TIMEOUT};
use crate::state::CometState;

fn auth(token: String) -> Body {
    Body::Auth(Auth {
        token,
        ..Auth::default()
    })
}

#[tokio::test]
async fn auth_replies_with_uid_key_and_rooms_and_opens_the_session() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    let reply = c.auth(&h.token("alice"), &["lobby", "", "lobby"]).await;
    assert_eq!(reply.uid, "alice");
    assert!(
        reply.key.starts_with(&comet.id),
        "key {} names its comet",
        reply.key
    );
    assert_eq!(reply.heartbeat_secs, 30);
    assert_eq!(
        reply.rooms,
        vec!["lobby".to_owned()],
        "invalid and duplicate rooms skipped"
    );

    let open = h
        .logic
        .wait_for(|c| match c {
            Call::Open(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(open.comet_id, comet.id);
    assert_eq!(open.uid, "alice");
    assert_eq!(open.key, reply.key);

    let (_c2, other) = comet.login(&h, "alice", &[]).await;
    assert_ne!(other.key, reply.key, "every connection gets its own key");
}

#[tokio::test]
async fn forged_or_expired_tokens_are_unauthenticated() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let forged = TokenKeys::new(b"not the secret")
        .issue("mallory", Duration::from_secs(60))
        .unwrap();
    let expired = h
        .keys
        .sign(&Claims {
            sub: "alice".into(),
            iat: 1,
            exp: 2,
            jti: None,
            iat_ms: None,
        })
        .unwrap();
    for token in [forged, expired, "garbage".to_owned()] {
        let mut c = comet.client().await;
        c.send(9, auth(token)).await;
        let err = c.expect_error(ErrorCode::Unauthenticated).await;
        assert_eq!(err.id, 9, "the error echoes the Auth frame id");
        c.expect_closed().await;
    }
    assert_eq!(h.logic.count(|c| matches!(c, Call::Open(_))), 0);
}

#[tokio::test]
async fn a_first_frame_other_than_auth_is_unauthenticated() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    c.send(3, Body::Heartbeat(Heartbeat {})).await;
    c.expect_error(ErrorCode::Unauthenticated).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn a_login_policy_refusal_is_rejected() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    c.send(1, auth(h.token("banned"))).await;
    c.expect_error(ErrorCode::Rejected).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn handshakes_waiting_for_logic_are_opened_in_one_batch() {
    let h = Harness::start().await;
    let state = h.state(h.config()).await;
    h.logic.hold_opens(true);
    let uids: Vec<String> = (0..10)
        .map(|i| match i {
            4 => "banned".to_owned(),
            _ => format!("user-{i}"),
        })
        .collect();
    let batches = |h: &Harness| h.logic.count(|c| matches!(c, Call::OpenBatch(_)));
    let opens = |h: &Harness| h.logic.count(|c| matches!(c, Call::Open(_)));
    let mut clients = Vec::new();
    for (i, uid) in uids.iter().enumerate() {
        let (mut c, task) = duplex_client(&state, 4096);
        c.send(1, auth(h.token(uid))).await;
        clients.push((c, task));
        // The first ones fill the call slots, one call each, held by logic.
        if i < crate::opener::IN_FLIGHT {
            eventually("a call out", || batches(&h) == i + 1).await;
        }
    }
    // The rest wait in the opener's queue.
    let rest = uids.len() - crate::opener::IN_FLIGHT;
    eventually("the rest queued", || state.opener.queued() == rest).await;
    assert_eq!(opens(&h), crate::opener::IN_FLIGHT);
    h.logic.hold_opens(false);

    for (i, (c, _)) in clients.iter_mut().enumerate() {
        if uids[i] == "banned" {
            c.expect_error(ErrorCode::Rejected).await;
        } else {
            let reply = c.recv().await;
            assert!(matches!(reply.body, Some(Body::AuthReply(_))), "{reply:?}");
        }
    }
    // The queued ones went as one call.
    assert_eq!(batches(&h), crate::opener::IN_FLIGHT + 1);
    assert_eq!(
        h.logic
            .count(|c| matches!(c, Call::OpenBatch(n) if *n == rest)),
        1
    );
    assert_eq!(opens(&h), uids.len());
}

#[tokio::test]
async fn unreachable_logic_is_unavailable() {
    let h = Harness::start().await;
    // No logic in this comet's pool.
    let state = std::sync::Arc::new(CometState::new(
        h.config(),
        std::sync::Arc::new(LogicPool::new(LOGIC_TIMEOUT, cluster_secret())),
    ));
    let (mut c, task) = duplex_client(&state, 4096);
    c.send(1, auth(h.token("alice"))).await;
    c.expect_error(ErrorCode::Unavailable).await;
    c.expect_closed().await;
    task.await.unwrap();
    assert_eq!(state.directory.keys.len(), 0);
}

#[tokio::test]
async fn missed_messages_follow_the_auth_reply() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    c.send(
        1,
        Body::Auth(Auth {
            token: h.token("alice"),
            last_seq: 5,
            epoch: EPOCH,
            ..Auth::default()
        }),
    )
    .await;
    let reply = c.recv().await;
    let Some(Body::AuthReply(reply)) = reply.body else {
        panic!("expected AuthReply, got {reply:?}")
    };
    assert_eq!(reply.inbox.map(|h| (h.epoch, h.last_seq)), Some((EPOCH, 6)));
    // The page of what was missed, before anything else (frame id 0).
    let page = c.recv().await;
    assert_eq!(page.id, 0);
    let Some(Body::SyncReply(page)) = page.body else {
        panic!("expected SyncReply, got {page:?}")
    };
    assert_eq!(page.room, "");
    let missed: Vec<(String, u64)> = page
        .messages
        .iter()
        .map(|m| (m.msg_id.clone(), m.seq))
        .collect();
    assert_eq!(missed, [("missed-1".to_owned(), 6)]);
}

#[tokio::test(start_paused = true)]
async fn no_auth_is_closed_after_the_handshake_timeout() {
    let config = crate::CometConfig {
        jwt_secret: SECRET.into(),
        handshake_timeout: Duration::from_secs(5),
        ..crate::CometConfig::default()
    };
    let state = std::sync::Arc::new(CometState::new(
        config,
        std::sync::Arc::new(LogicPool::new(LOGIC_TIMEOUT, cluster_secret())),
    ));
    let start = tokio::time::Instant::now();
    let (mut c, task) = duplex_client(&state, 4096);
    // Paused time moves only once every task is idle, so the connection
    // task has started its handshake clock before this sleep ends.
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert!(
        !task.is_finished(),
        "still waiting for Auth before the timeout"
    );
    c.expect_error(ErrorCode::HandshakeTimeout).await;
    // Virtual time: the error came exactly when the timeout ran out.
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    c.expect_closed().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_frame_larger_than_an_auth_is_refused_at_its_length_prefix() {
    let config = crate::CometConfig {
        jwt_secret: SECRET.into(),
        max_auth_frame: 8 * 1024,
        ..crate::CometConfig::default()
    };
    let state = std::sync::Arc::new(CometState::new(
        config,
        std::sync::Arc::new(LogicPool::new(LOGIC_TIMEOUT, cluster_secret())),
    ));
    let start = tokio::time::Instant::now();
    let (mut c, task) = duplex_client(&state, 4096);
    // Four bytes announcing 65,280: within max_frame, far over an Auth.
    c.send_bytes(&65_280u32.to_be_bytes()).await;
    let error = c.expect_error(ErrorCode::BadFrame).await;
    let Some(Body::Error(e)) = error.body else {
        unreachable!("expect_error returns an Error frame")
    };
    assert!(e.message.contains("8192"), "{}", e.message);
    // At once, not when the handshake timeout runs out.
    assert!(start.elapsed() < state.config.handshake_timeout);
    c.expect_closed().await;
    task.await.unwrap();
}

#[tokio::test]
async fn connections_still_authenticating_are_capped_per_address() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            max_handshakes_per_ip: 2,
            ..h.config()
        })
        .await;
    // Two silent connections hold both places of 127.0.0.1.
    let mut first = comet.client().await;
    let _second = comet.client().await;
    let mut third = comet.client().await;
    let refused = third.expect_error(ErrorCode::TooManyConnections).await;
    let Some(Body::Error(e)) = refused.body else {
        unreachable!("expect_error returns an Error frame")
    };
    assert!(e.message.contains("authenticating"), "{}", e.message);
    third.expect_closed().await;

    // Once one of them authenticates, its place is free for the next.
    first.auth(&h.token("alice"), &[]).await;
    let (_fourth, reply) = comet.login(&h, "bob", &[]).await;
    assert_eq!(reply.uid, "bob");
}

#[tokio::test]
async fn connections_past_the_accept_rate_are_told_to_back_off() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            accept_rate: 1,
            ..h.config()
        })
        .await;
    // A burst of one a second: the first is served, the next told BUSY.
    let (_first, reply) = comet.login(&h, "alice", &[]).await;
    assert_eq!(reply.uid, "alice");
    let mut second = comet.client().await;
    second.expect_error(ErrorCode::Busy).await;
    second.expect_closed().await;
}
