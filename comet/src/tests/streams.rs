//! Reading stored messages through a comet: the inbox head in heartbeat
//! replies, `Sync` pages of the inbox and of joined rooms, a recovering
//! `Join`, coalesced acks, and pushes held behind the resume page.

use courier_proto::client::{frame::Body, Ack, Auth, ErrorCode, Heartbeat, Join, Sync};
use courier_proto::comet::PushKeysRequest;

use super::support::*;

fn sync(room: &str, after_seq: u64) -> Body {
    Body::Sync(Sync {
        after_seq,
        limit: 10,
        room: room.into(),
        epoch: EPOCH,
    })
}

#[tokio::test]
async fn a_heartbeat_reply_carries_the_inbox_head() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    c.send(3, Body::Heartbeat(Heartbeat {})).await;
    let reply = c.recv().await;
    let Some(Body::HeartbeatReply(reply)) = reply.body else {
        panic!("expected HeartbeatReply, got {reply:?}")
    };
    let head = reply.inbox.expect("logic's head");
    assert_eq!((head.epoch, head.last_seq), (EPOCH, 3));
}

#[tokio::test]
async fn sync_reads_the_inbox_and_joined_rooms_only() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, auth) = comet.login(&h, "alice", &["lobby"]).await;

    c.send(5, sync("", 41)).await;
    let reply = c.recv().await;
    assert_eq!(reply.id, 5, "the reply echoes the Sync's id");
    let Some(Body::SyncReply(page)) = reply.body else {
        panic!("expected SyncReply, got {reply:?}")
    };
    assert_eq!(page.room, "");
    assert_eq!(page.messages[0].msg_id, "synced-42");
    assert_eq!(page.head.map(|h| h.last_seq), Some(42));
    let asked = h
        .logic
        .wait_for(|c| match c {
            Call::Sync(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (asked.uid.as_str(), asked.key.as_str()),
        ("alice", auth.key.as_str())
    );

    c.send(6, sync("lobby", 0)).await;
    let Some(Body::SyncReply(page)) = c.recv().await.body else {
        panic!("expected SyncReply")
    };
    assert_eq!((page.room.as_str(), page.messages.len()), ("lobby", 1));

    c.send(7, sync("elsewhere", 0)).await;
    let refused = c.expect_error(ErrorCode::NotInRoom).await;
    assert_eq!(refused.id, 7);
}

#[tokio::test]
async fn a_join_with_a_position_recovers_the_room() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    let join = Join {
        room: "lobby".into(),
        last_seq: 9,
        epoch: EPOCH,
    };
    c.send(4, Body::Join(join)).await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(_))));
    let page = c.recv().await;
    assert_eq!(page.id, 0, "recovery is unsolicited");
    let Some(Body::SyncReply(page)) = page.body else {
        panic!("expected SyncReply, got {page:?}")
    };
    assert_eq!(page.room, "lobby");
    assert_eq!(
        (page.messages[0].msg_id.as_str(), page.messages[0].seq),
        ("synced-10", 10)
    );
    // A plain join recovers nothing: the next frame is the heartbeat reply.
    c.send(
        5,
        Body::Join(Join {
            room: "ops".into(),
            ..Join::default()
        }),
    )
    .await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(_))));
    c.send(6, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(c.recv().await.id, 6);
}

#[tokio::test]
async fn acks_reach_logic_with_the_latest_position() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    for seq in 1..=20 {
        c.send(0, Body::Ack(Ack { seq, epoch: EPOCH })).await;
    }
    h.logic
        .wait_for(|c| match c {
            Call::Ack(r) if r.seq == 20 && r.epoch == EPOCH && r.uid == "alice" => Some(()),
            _ => None,
        })
        .await;
    let calls = h.logic.count(|c| matches!(c, Call::Ack(_)));
    assert!(calls <= 20, "{calls} calls for 20 acks");
}

/// Pushes that arrive while a connection resumes wait behind what it missed.
#[tokio::test]
async fn live_pushes_follow_the_resume_page() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    // Logic has the session open (and publishes to it) before the comet
    // has its answer: a push arrives while the connection resumes.
    h.logic.hold_opens(true);
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
    let open = h
        .logic
        .wait_for(|c| match c {
            Call::Open(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    push.push_keys(PushKeysRequest {
        keys: vec![open.key.clone()],
        messages: vec![encoded_with("live", b"")],
    })
    .await
    .unwrap();
    h.logic.hold_opens(false);
    assert!(matches!(c.recv().await.body, Some(Body::AuthReply(_))));
    assert!(matches!(c.recv().await.body, Some(Body::SyncReply(_))));
    assert_eq!(push_ids(&c.recv().await), ["live"]);
}
