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
        before_seq: 0,
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

/// Logic's session store lost writes: `Resync` makes the comet report
/// every connection and room again, and tell each client where its inbox
/// and rooms stand, unasked.
#[tokio::test]
async fn a_resync_reports_every_connection_and_tells_clients_their_heads() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut alice, alice_auth) = comet.login(&h, "alice", &["lobby"]).await;
    let (mut bob, bob_auth) = comet.login(&h, "bob", &[]).await;

    let mut push = comet.push_client().await;
    let reply = push
        .resync(courier_proto::comet::ResyncRequest {})
        .await
        .expect("resync accepted")
        .into_inner();
    assert_eq!(reply.connections, 2);

    let restored = h
        .logic
        .wait_for(|c| match c {
            Call::Restore(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    let mut keys: Vec<(String, String)> = restored
        .sessions
        .iter()
        .map(|s| (s.uid.clone(), s.key.clone()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("alice".to_owned(), alice_auth.key.clone()),
            ("bob".to_owned(), bob_auth.key.clone())
        ]
    );
    assert_eq!(restored.rooms, ["lobby"]);

    // Bob hears his inbox's head; Alice her inbox's and the lobby's.
    let heads = |frames: Vec<courier_proto::client::Frame>| {
        frames
            .into_iter()
            .map(|f| {
                assert_eq!(f.id, 0, "unasked");
                let Some(Body::HeartbeatReply(r)) = f.body else {
                    panic!("expected HeartbeatReply, got {f:?}")
                };
                (
                    r.inbox.map(|h| h.last_seq),
                    r.rooms.get("lobby").map(|h| h.last_seq),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(heads(vec![bob.recv().await]), [(Some(5), None)]);
    let mut alices = heads(vec![alice.recv().await, alice.recv().await]);
    alices.sort();
    assert_eq!(alices, [(None, Some(5)), (Some(5), None)]);
}
