//! The gRPC push service: keys, rooms, everyone, kick, stats, and what
//! happens to a client that does not read.

use std::collections::HashSet;

use courier_proto::client::{frame::Body, Heartbeat, Join, Leave};
use courier_proto::comet::comet_server::Comet as _;
use courier_proto::comet::{
    BroadcastRequest, KickRequest, PushKeysRequest, PushRoomRequest, StatsRequest,
};
use tonic::Request;

use super::support::*;
use crate::push_service::PushService;

fn room_push(room: &str, id: &str) -> PushRoomRequest {
    PushRoomRequest {
        room: room.into(),
        messages: vec![encoded_with(id, b"{}")],
    }
}

#[tokio::test]
async fn push_room_reaches_members_only_and_logic_learns_the_rooms() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let (mut a, _) = comet.login(&h, "alice", &["lobby"]).await;
    let (mut b, _) = comet.login(&h, "bob", &[]).await;
    let (mut outsider, _) = comet.login(&h, "carol", &["other"]).await;
    b.send(
        2,
        Body::Join(Join {
            room: "lobby".into(),
            ..Join::default()
        }),
    )
    .await;
    assert!(matches!(b.recv().await.body, Some(Body::JoinReply(_))));

    let reply = push
        .push_room(room_push("lobby", "m1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.delivered, 2);
    assert_eq!(push_ids(&a.recv().await), vec!["m1".to_owned()]);
    assert_eq!(push_ids(&b.recv().await), vec!["m1".to_owned()]);

    b.send(
        3,
        Body::Leave(Leave {
            room: "lobby".into(),
        }),
    )
    .await;
    assert!(matches!(b.recv().await.body, Some(Body::LeaveReply(_))));
    let reply = push
        .push_room(room_push("lobby", "m2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.delivered, 1);
    assert_eq!(push_ids(&a.recv().await), vec!["m2".to_owned()]);

    // Neither bob (left) nor carol (other room) got anything: their next
    // frame is the reply to this heartbeat.
    for c in [&mut b, &mut outsider] {
        c.send(9, Body::Heartbeat(Heartbeat {})).await;
        assert!(matches!(c.recv().await.body, Some(Body::HeartbeatReply(_))));
    }
    h.logic
        .wait_for(|c| match c {
            Call::RoomsChanged(r) if r.added.contains(&"lobby".to_owned()) => Some(()),
            _ => None,
        })
        .await;
    drop(a);
    h.logic
        .wait_for(|c| match c {
            Call::RoomsChanged(r) if r.removed.contains(&"lobby".to_owned()) => Some(()),
            _ => None,
        })
        .await;
    let stats = push.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.room_pushes, 2);
}

#[tokio::test]
async fn push_keys_reaches_the_named_connections() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let (mut a, auth_a) = comet.login(&h, "alice", &[]).await;
    let (mut b, _) = comet.login(&h, "bob", &[]).await;
    let reply = push
        .push_keys(PushKeysRequest {
            keys: vec![auth_a.key.clone(), auth_a.key.clone(), "nobody".into()],
            messages: vec![encoded_with("k1", b"1"), encoded_with("k2", b"2")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.delivered, 1,
        "duplicate and unknown keys are not counted"
    );
    assert_eq!(
        push_ids(&a.recv().await),
        vec!["k1".to_owned(), "k2".to_owned()]
    );
    b.send(9, Body::Heartbeat(Heartbeat {})).await;
    assert!(
        matches!(b.recv().await.body, Some(Body::HeartbeatReply(_))),
        "bob got nothing"
    );
    a.send(9, Body::Heartbeat(Heartbeat {})).await;
    assert!(
        matches!(a.recv().await.body, Some(Body::HeartbeatReply(_))),
        "pushed once"
    );
}

#[tokio::test]
async fn broadcast_reaches_every_connection() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let mut clients = Vec::new();
    for uid in ["a", "b", "c"] {
        clients.push(comet.login(&h, uid, &[]).await.0);
    }
    let reply = push
        .broadcast(BroadcastRequest {
            messages: vec![encoded_with("all-1", b"x")],
            rate: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.delivered, 3);
    for c in &mut clients {
        assert_eq!(push_ids(&c.recv().await), vec!["all-1".to_owned()]);
    }
}

#[tokio::test]
async fn a_paced_broadcast_reaches_every_connection_in_its_time() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let mut clients = Vec::new();
    for uid in ["a", "b", "c"] {
        clients.push(comet.login(&h, uid, &[]).await.0);
    }
    // Three connections at four a second: answered at once, delivered over
    // half a second (the pace itself is checked in `pacing`).
    let reply = push
        .broadcast(BroadcastRequest {
            messages: vec![encoded_with("all-paced", b"x")],
            rate: 4,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.delivered, 3, "the connections it will reach");
    for c in &mut clients {
        assert_eq!(push_ids(&c.recv().await), vec!["all-paced".to_owned()]);
    }
}

#[tokio::test]
async fn kick_sends_the_reason_then_closes() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let (mut a, auth) = comet.login(&h, "alice", &[]).await;
    let reply = push
        .kick(KickRequest {
            keys: vec![auth.key.clone(), "nobody".into()],
            reason: "logged in elsewhere".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.kicked, 1);
    match a.recv().await.body {
        Some(Body::Kick(k)) => assert_eq!(k.reason, "logged in elsewhere"),
        other => panic!("expected Kick, got {other:?}"),
    }
    a.expect_closed().await;
    assert_eq!(h.logic.closed().await.key, auth.key);
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_with_bounded_memory() {
    let h = Harness::start().await;
    let queue = 8;
    let state = h
        .state(crate::CometConfig {
            outbound_queue: queue,
            ..h.config()
        })
        .await;
    let service = PushService::new(
        state.directory.clone(),
        state.id(),
        state.config.max_frame,
        state.drain_requested.clone(),
        state.resync.clone(),
    );
    // A 1 KiB pipe the client never drains.
    let (mut slow, slow_task) = duplex_client(&state, 1024);
    let slow_auth = slow.auth(&h.token("slow"), &["r"]).await;
    let (mut fast, _fast_task) = duplex_client(&state, 1 << 20);
    fast.auth(&h.token("fast"), &["r"]).await;

    let payload = vec![b'x'; 4096];
    let mut queued_to_slow = 0;
    for i in 0..200 {
        let reply = service
            .push_keys(Request::new(PushKeysRequest {
                keys: vec![slow_auth.key.clone()],
                messages: vec![encoded_with(&i.to_string(), &payload)],
            }))
            .await
            .unwrap()
            .into_inner();
        if reply.delivered == 0 {
            break;
        }
        queued_to_slow += 1;
    }
    // The queue holds `queue` frames and the writer at most one batch of as
    // many: nothing beyond that was ever accepted for this client.
    assert!(queued_to_slow >= queue, "queued {queued_to_slow}");
    assert!(queued_to_slow <= 2 * queue + 1, "queued {queued_to_slow}");
    slow_task.await.unwrap();
    assert!(state.directory.keys.get(&slow_auth.key).is_none());

    let stats = service
        .stats(Request::new(StatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.slow_consumers, 1);
    assert_eq!(stats.connections, 1);

    // The other member of the room is unaffected.
    let frames = courier_proto::encode_push(&[encoded_with("after", b"")], 1024).unwrap();
    let delivered = state.directory.push_room("r", &frames);
    assert_eq!(delivered, 1);
    assert_eq!(push_ids(&fast.recv().await), vec!["after".to_owned()]);

    // Whatever the slow client reads now, the stream ends.
    let mut frames = 0;
    while let Some(Ok(_)) = slow.try_next().await {
        frames += 1;
    }
    assert!(frames <= 2 * queue + 2);
    h.logic
        .wait_for(|c| match c {
            Call::Close(r) if r.key == slow_auth.key => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test]
async fn stats_count_connections_rooms_and_frames() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let (_a, _) = comet.login(&h, "alice", &["r1", "r2"]).await;
    let (_b, _) = comet.login(&h, "bob", &["r1"]).await;
    push.push_room(room_push("r1", "m")).await.unwrap();
    let stats = push.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.comet_id, comet.id);
    assert_eq!(stats.connections, 2);
    let rooms: HashSet<_> = stats
        .rooms
        .iter()
        .map(|r| (r.room.as_str(), r.connections))
        .collect();
    assert_eq!(rooms, HashSet::from([("r1", 2), ("r2", 1)]));
    assert_eq!(stats.room_pushes, 1);
    assert!(stats.frames_queued >= 4, "2 AuthReplies and 2 pushes");
    assert_eq!(stats.slow_consumers, 0);
}

#[tokio::test]
async fn push_keys_batch_delivers_each_entry_in_order_or_rejects_the_whole_batch() {
    use courier_proto::comet::PushKeysBatchRequest;

    fn entry(keys: &[&str], id: &str, data: &[u8]) -> PushKeysRequest {
        PushKeysRequest {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            messages: vec![encoded_with(id, data)],
        }
    }

    let h = Harness::start().await;
    let config = h.config();
    let max_frame = config.max_frame;
    let comet = h.comet(config).await;
    let mut push = comet.push_client().await;
    let (mut a, auth_a) = comet.login(&h, "alice", &[]).await;
    let (mut b, auth_b) = comet.login(&h, "bob", &[]).await;
    let (ka, kb) = (auth_a.key.as_str(), auth_b.key.as_str());

    let reply = push
        .push_keys_batch(PushKeysBatchRequest {
            pushes: vec![
                entry(&[ka], "b1", b"1"),
                entry(&[kb], "b2", b"2"),
                entry(&[ka, kb, ka], "b3", b"3"),
                entry(&["nobody"], "b4", b"4"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.delivered, 4, "1 + 1 + 2 + 0 connections");
    assert_eq!(push_ids(&a.recv().await), vec!["b1".to_owned()]);
    assert_eq!(push_ids(&a.recv().await), vec!["b3".to_owned()]);
    assert_eq!(push_ids(&b.recv().await), vec!["b2".to_owned()]);
    assert_eq!(push_ids(&b.recv().await), vec!["b3".to_owned()]);

    // One entry too large for a frame: nothing of the batch is queued.
    let too_big = vec![0u8; max_frame + 1];
    let err = push
        .push_keys_batch(PushKeysBatchRequest {
            pushes: vec![entry(&[ka], "ok", b"1"), entry(&[ka], "big", &too_big)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // More entries than allowed: rejected as well.
    let err = push
        .push_keys_batch(PushKeysBatchRequest {
            pushes: (0..=crate::push_service::MAX_KEYS_BATCH)
                .map(|i| entry(&[ka], &i.to_string(), b""))
                .collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    a.send(9, Body::Heartbeat(Heartbeat {})).await;
    assert!(
        matches!(a.recv().await.body, Some(Body::HeartbeatReply(_))),
        "rejected batches queued nothing"
    );
}

#[tokio::test]
async fn a_batch_to_one_connection_shares_frames_instead_of_filling_its_outbox() {
    use courier_proto::comet::PushKeysBatchRequest;

    let h = Harness::start().await;
    let mut config = h.config();
    config.outbound_queue = 4;
    let comet = h.comet(config).await;
    let mut push = comet.push_client().await;
    let (mut a, auth) = comet.login(&h, "alice", &[]).await;

    // Far more entries than the outbox has slots, all for alice: one
    // user's stream, as job batches it under load.
    let ids: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let reply = push
        .push_keys_batch(PushKeysBatchRequest {
            pushes: ids
                .iter()
                .map(|id| PushKeysRequest {
                    keys: vec![auth.key.clone()],
                    messages: vec![encoded_with(id, b"x")],
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.delivered, 100, "one connection, 100 entries");

    let mut received = Vec::new();
    while received.len() < ids.len() {
        received.extend(push_ids(&a.recv().await));
    }
    assert_eq!(received, ids, "every message, in order");
    let stats = push.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.slow_consumers, 0, "alice was not dropped");
}

#[tokio::test]
async fn a_call_without_the_cluster_secret_is_refused() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut a, auth) = comet.login(&h, "alice", &["lobby"]).await;
    let mut stranger = comet.anonymous_push_client().await;
    let refused = stranger
        .push_keys(PushKeysRequest {
            keys: vec![auth.key.clone()],
            messages: vec![encoded_with("forged", b"")],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = stranger
        .broadcast(BroadcastRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = stranger
        .kick(KickRequest {
            keys: vec![auth.key.clone()],
            reason: "forged".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // Nothing reached alice: her next frame answers her heartbeat.
    a.send(9, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(a.recv().await.id, 9);
}
