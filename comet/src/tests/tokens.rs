//! A connection's token on the live connection: it ends the connection
//! when it expires, a `Refresh` replaces it, and the session is checked by
//! time, not only when the client sends heartbeats.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_proto::client::{frame::Body, ErrorCode, Heartbeat, Leave, Refresh};
use tokio::time::Instant;

use super::support::*;

/// When `expires_at_ms` (unix ms) comes, on the runtime's clock.
fn instant_at(expires_at_ms: i64) -> Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let at = Duration::from_millis(u64::try_from(expires_at_ms).unwrap());
    Instant::now() + at.saturating_sub(now)
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    let token = h.keys.issue("alice", Duration::from_secs(1)).unwrap();
    let reply = c.auth(&token, &[]).await;
    assert!(reply.expires_at_ms > 0, "the client is told when");
    // Nothing else would end it: heartbeats are due in 30 s, idle in 90.
    let frame = c.expect_error(ErrorCode::TokenExpired).await;
    assert_eq!(frame.id, 0);
    c.expect_closed().await;
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_connection_past_the_old_expiry() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    // Two seconds (whole seconds, so at least one): time to refresh.
    let short = h.keys.issue("alice", Duration::from_secs(2)).unwrap();
    let reply = c.auth(&short, &[]).await;
    c.send(
        2,
        Body::Refresh(Refresh {
            token: h.token("alice"),
        }),
    )
    .await;
    let frame = c.recv().await;
    let Some(Body::RefreshReply(refreshed)) = frame.body else {
        panic!("expected RefreshReply, got {frame:?}")
    };
    assert_eq!(frame.id, 2);
    assert!(refreshed.expires_at_ms > reply.expires_at_ms);
    // The moment the first token expired is the event under test.
    tokio::time::sleep_until(instant_at(reply.expires_at_ms) + Duration::from_millis(500)).await;
    c.send(3, Body::Heartbeat(Heartbeat {})).await;
    let frame = c.recv().await;
    assert_eq!(frame.id, 3, "still open: {frame:?}");
    assert!(matches!(frame.body, Some(Body::HeartbeatReply(_))));
}

#[tokio::test]
async fn a_refresh_with_a_bad_or_foreign_token_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    c.send(
        2,
        Body::Refresh(Refresh {
            token: h.token("mallory"),
        }),
    )
    .await;
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await.id, 2);
    let huge = "x".repeat(60 * 1024);
    for (id, token) in [(3, "not a token"), (4, huge.as_str()), (5, "")] {
        c.send(
            id,
            Body::Refresh(Refresh {
                token: token.into(),
            }),
        )
        .await;
        assert_eq!(c.expect_error(ErrorCode::Unauthenticated).await.id, id);
    }
    c.send(6, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(c.recv().await.id, 6, "the connection stays");
}

#[tokio::test]
async fn the_session_is_checked_by_time_even_without_heartbeats() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            session_check: Duration::from_millis(200),
            ..h.config()
        })
        .await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    // A client that keeps the connection busy with anything but heartbeats.
    c.send(2, Body::Leave(Leave { room: "r".into() })).await;
    // Its reply, and the check's, unasked and carrying the inbox head, in
    // whichever order they come.
    let (mut left, mut checked) = (false, false);
    while !(left && checked) {
        let frame = c.recv().await;
        match (frame.id, frame.body) {
            (2, Some(Body::LeaveReply(_))) => left = true,
            (0, Some(Body::HeartbeatReply(reply))) => {
                assert!(reply.inbox.is_some(), "the check carries the inbox head");
                checked = true;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}
