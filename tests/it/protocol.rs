//! The wire protocol at the socket: heartbeats, timeouts, bad tokens, hostile
//! bytes and slow consumers. These speak raw frames, not the SDK.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use courier_proto::client::{frame::Body, Auth, ErrorCode, Heartbeat, Join};
use courier_proto::comet::StatsRequest;
use courier_runtime::{Claims, TokenKeys};
use courier_testkit::FrameClient;
use serde_json::json;
use support::*;

type Conn = FrameClient;

/// Longer than any server timer under test (heartbeat x 3 = 90 s); only
/// ever waited for on paused time.
const VIRTUAL_DEADLINE: Duration = Duration::from_secs(600);

async fn connect(system: &courier::System) -> Conn {
    FrameClient::connect(system.comets[0].tcp).await
}

/// Reads until the server closes the socket; returns the Error frames seen.
async fn until_closed(conn: &mut Conn) -> Vec<i32> {
    conn.errors_until_closed(DEADLINE).await
}

/// An `Auth` frame body presenting `token`.
fn auth(token: String) -> Body {
    Body::Auth(Auth {
        token,
        ..Default::default()
    })
}

/// Opens a socket, sends `body` as its first frame and reads until the
/// server closes it; returns the Error codes seen.
async fn first_frame_then_closed(system: &courier::System, body: Body) -> Vec<i32> {
    let mut conn = connect(system).await;
    conn.send(1, body).await;
    until_closed(&mut conn).await
}

async fn authed(system: &courier::System, name: &str) -> Conn {
    let token = token(system, name).await;
    let mut conn = connect(system).await;
    let reply = conn.auth(&token, &[]).await;
    assert_eq!(reply.uid, name);
    conn
}

#[tokio::test]
async fn heartbeat_is_answered_with_the_same_id() {
    let system = start(1).await;
    let mut conn = authed(&system, "alice").await;
    conn.send(42, Body::Heartbeat(Heartbeat {})).await;
    let reply = conn.recv().await;
    assert_eq!(reply.id, 42);
    assert!(matches!(reply.body, Some(Body::HeartbeatReply(_))));
    system.stop().await;
}

#[tokio::test]
async fn unauthenticated_socket_is_closed_after_the_handshake_timeout() {
    let system = start(1).await;
    let mut conn = connect(&system).await;
    // Virtual time: the comet's 5 s handshake timer fires without waiting.
    tokio::time::pause();
    let codes = conn.errors_until_closed(VIRTUAL_DEADLINE).await;
    assert_eq!(codes, vec![ErrorCode::HandshakeTimeout as i32]);
}

#[tokio::test]
async fn silent_connection_is_closed_after_three_heartbeats() {
    let system = start(1).await;
    let mut conn = authed(&system, "alice").await;
    tokio::time::pause();
    let codes = conn.errors_until_closed(VIRTUAL_DEADLINE).await;
    assert_eq!(codes, vec![ErrorCode::Idle as i32]);
}

#[tokio::test]
async fn forged_or_expired_tokens_are_refused() {
    let system = start(1).await;
    let forged = TokenKeys::new(b"not the secret")
        .issue("alice", Duration::from_secs(60))
        .unwrap();
    let expired = TokenKeys::new(system.config.auth.jwt_secret.as_bytes())
        .sign(&Claims {
            sub: "alice".into(),
            iat: 1,
            exp: 1000,
            jti: None,
            iat_ms: None,
        })
        .unwrap();
    for token in [forged, expired, "garbage".to_owned()] {
        let codes = first_frame_then_closed(&system, auth(token)).await;
        assert_eq!(codes, vec![ErrorCode::Unauthenticated as i32]);
    }
    // A first frame that is not Auth is refused the same way.
    let join = Body::Join(Join {
        room: "x".into(),
        ..Join::default()
    });
    let codes = first_frame_then_closed(&system, join).await;
    assert_eq!(codes, vec![ErrorCode::Unauthenticated as i32]);
    system.stop().await;
}

#[tokio::test]
async fn hostile_bytes_close_only_their_own_socket() {
    let system = start(1).await;
    let api = Api::new(&system);
    let (_bob, mut bob_events) = user(&system, "bob").await;

    for bytes in [&[0x80u8, 0, 0, 0][..], &[0, 0, 0, 3, 0xff, 0xff, 0xff][..]] {
        let mut conn = authed(&system, "mallory").await;
        conn.send_bytes(bytes).await;
        let codes = until_closed(&mut conn).await;
        assert_eq!(codes, vec![ErrorCode::BadFrame as i32]);
    }
    // Before auth too.
    let mut conn = connect(&system).await;
    conn.send_bytes(&[0x80, 0, 0, 0]).await;
    assert_eq!(
        until_closed(&mut conn).await,
        vec![ErrorCode::BadFrame as i32]
    );

    let (status, _) = api
        .post(
            "/push/users",
            json!({"uids": ["bob"], "op": 1, "data": "still here"}),
        )
        .await;
    assert_eq!(status, 202);
    next_message_is(&mut bob_events, br#""still here""#).await;
    system.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let mut config = config();
    config.comet.outbound_queue = 16;
    let system = start_with(config, 1).await;
    let api = Api::new(&system);
    let (_bob, mut bob_events) = user(&system, "bob").await;
    let conn = authed(&system, "sloth").await;

    // Push far more than the socket buffers plus a 16-frame queue can hold
    // to a client that never reads. The comet must drop it, not buffer it.
    let big = "x".repeat(32 * 1024);
    let grpc = system.comets[0].grpc.to_string();
    let mut comet = comet_client(&grpc, &system.config.auth.cluster_secret).await;
    let mut dropped = false;
    for _ in 0..2000 {
        let (status, _) = api
            .post(
                "/push/users",
                json!({"uids": ["sloth"], "op": 1, "data": big}),
            )
            .await;
        assert_eq!(status, 202);
        let stats = comet
            .stats(StatsRequest {})
            .await
            .expect("stats")
            .into_inner();
        if stats.slow_consumers == 1 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow client was never disconnected");
    api.wait_for("/online", |b| b["users"] == 1).await;
    drop(conn);

    // Everyone else is served as before.
    api.post(
        "/push/users",
        json!({"uids": ["bob"], "op": 1, "data": "fine"}),
    )
    .await;
    next_message_is(&mut bob_events, br#""fine""#).await;
    system.stop().await;
}
