//! An authenticated connection: heartbeats, idling, bad input, rooms, sends.

use std::time::Duration;

use courier_proto::client::{
    frame::Body, Auth, ErrorCode, Heartbeat, Join, Leave, Push, Send, Target,
};
use futures::FutureExt;

use super::support::*;

#[tokio::test]
async fn heartbeat_is_answered_with_its_id_and_renews_the_session() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, auth) = comet.login(&h, "alice", &[]).await;
    c.send(42, Body::Heartbeat(Heartbeat {})).await;
    let reply = c.recv().await;
    assert_eq!(reply.id, 42);
    assert!(matches!(reply.body, Some(Body::HeartbeatReply(_))));
    let renewed = h
        .logic
        .wait_for(|c| match c {
            Call::Heartbeat(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (renewed.uid.as_str(), renewed.key.as_str()),
        ("alice", auth.key.as_str())
    );
}

/// Idle costs logic nothing: between session checks a heartbeat is
/// answered by the comet alone.
#[tokio::test]
async fn heartbeats_between_session_checks_are_answered_without_logic() {
    let h = Harness::start().await;
    let config = crate::CometConfig {
        session_check: Duration::from_secs(3600),
        ..h.config()
    };
    let comet = h.comet(config).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    for id in 1..=10 {
        c.send(id, Body::Heartbeat(Heartbeat {})).await;
        let reply = c.recv().await;
        assert_eq!(reply.id, id);
        let Some(Body::HeartbeatReply(reply)) = reply.body else {
            panic!("expected HeartbeatReply, got {reply:?}")
        };
        assert_eq!(reply.inbox, None, "no check, so no head");
    }
    assert_eq!(h.logic.count(|c| matches!(c, Call::Heartbeat(_))), 0);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_three_heartbeats() {
    let h = Harness::start().await;
    let config = crate::CometConfig {
        heartbeat: Duration::from_secs(10),
        ..h.config()
    };
    let state = h.state(config).await;
    let (mut c, _task) = duplex_client(&state, 4096);
    c.auth(&h.token("alice"), &[]).await;

    // Authenticated in real time (logic is a real gRPC server); from here on
    // time is virtual.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(25)).await;
    c.send(2, Body::Heartbeat(Heartbeat {})).await;
    assert!(matches!(c.recv().await.body, Some(Body::HeartbeatReply(_))));
    // The heartbeat restarted the 30 s clock. Paused time moves only once
    // every task is idle, so anything due before 29 s has happened.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(
        futures::StreamExt::next(c.framed_mut())
            .now_or_never()
            .is_none(),
        "nothing may arrive before 3 silent heartbeats"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    c.expect_error(ErrorCode::Idle).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn a_2_gib_length_prefix_closes_only_that_connection() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut good, _) = comet.login(&h, "alice", &[]).await;

    let mut evil = comet.client().await;
    evil.send_bytes(&[0x80, 0, 0, 0]).await;
    evil.expect_error(ErrorCode::BadFrame).await;
    evil.expect_closed().await;

    let (mut evil2, _) = comet.login(&h, "bob", &[]).await;
    evil2.send_bytes(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    evil2.expect_error(ErrorCode::BadFrame).await;
    evil2.expect_closed().await;

    good.send(5, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(good.recv().await.id, 5, "the other connection still works");
}

#[tokio::test]
async fn a_second_auth_or_a_server_frame_is_unexpected() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    c.send(
        2,
        Body::Auth(Auth {
            token: h.token("alice"),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(c.expect_error(ErrorCode::Unexpected).await.id, 2);
    c.expect_closed().await;

    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    c.send(3, Body::Push(Push { messages: vec![] })).await;
    c.expect_error(ErrorCode::Unexpected).await;
    c.expect_closed().await;
    // Both sessions were closed in logic.
    h.logic.wait_count(|c| matches!(c, Call::Close(_)), 2).await;
}

#[tokio::test]
async fn join_and_leave_are_validated_and_bounded() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            max_rooms: 2,
            ..h.config()
        })
        .await;
    let (mut c, _) = comet.login(&h, "alice", &["a"]).await;
    let join = |room: &str| {
        Body::Join(Join {
            room: room.into(),
            ..Join::default()
        })
    };

    c.send(2, join("b")).await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(r)) if r.room == "b"));
    c.send(3, join("c")).await;
    assert_eq!(c.expect_error(ErrorCode::TooManyRooms).await.id, 3);
    c.send(4, join(&"x".repeat(65))).await;
    c.send(5, join("")).await;
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await.id, 4);
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await.id, 5);

    c.send(6, Body::Leave(Leave { room: "a".into() })).await;
    assert!(matches!(c.recv().await.body, Some(Body::LeaveReply(r)) if r.room == "a"));
    c.send(7, join("c")).await;
    let reply = c.recv().await;
    assert_eq!(reply.id, 7);
    assert!(
        matches!(reply.body, Some(Body::JoinReply(_))),
        "room freed by Leave"
    );
}

#[tokio::test]
async fn send_answers_with_logic_ids_or_an_error_without_closing() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    let send = |data: &[u8], to: Target| {
        Body::Send(Send {
            to: Some(to),
            op: 1,
            data: data.to_vec().into(),
            client_msg_id: "c1".into(),
        })
    };
    c.send(10, send(b"hi", Target::user("bob"))).await;
    let reply = c.recv().await;
    assert_eq!(reply.id, 10);
    match reply.body {
        Some(Body::SendReply(r)) => assert_eq!((r.msg_id.as_str(), r.seq), ("m-c1", 7)),
        other => panic!("expected SendReply, got {other:?}"),
    }
    c.send(11, send(b"bad", Target::room("r"))).await;
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await.id, 11);
    c.send(12, send(b"hi", Target::all())).await;
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await.id, 12);
    assert_eq!(
        h.logic.count(|c| matches!(c, Call::Send(_))),
        2,
        "broadcast never reaches logic"
    );
    let sent = h
        .logic
        .wait_for(|c| match c {
            Call::Send(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (sent.uid.as_str(), sent.comet_id.as_str()),
        ("alice", comet.id.as_str())
    );

    c.send(13, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(c.recv().await.id, 13, "still open");
}

#[tokio::test]
async fn a_disconnect_leaves_rooms_and_closes_the_session() {
    let h = Harness::start().await;
    let state = h.state(h.config()).await;
    let (mut c, task) = duplex_client(&state, 4096);
    let auth = c.auth(&h.token("alice"), &["r"]).await;
    assert_eq!(state.directory.keys.len(), 1);
    assert_eq!(state.directory.rooms.len(), 1);
    drop(c);
    task.await.unwrap();
    assert_eq!(state.directory.keys.len(), 0);
    assert_eq!(state.directory.rooms.len(), 0);
    assert_eq!(h.logic.closed().await.key, auth.key);
}

#[tokio::test]
async fn sends_past_the_rate_are_refused_without_closing() {
    let h = Harness::start().await;
    let mut config = h.config();
    config.send_rate = 2;
    let comet = h.comet(config).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    let send = || {
        Body::Send(Send {
            to: Some(Target::user("bob")),
            op: 1,
            data: b"hi".to_vec().into(),
            client_msg_id: String::new(),
        })
    };
    // A burst of `send_rate` is allowed at once; the next one is refused.
    for id in 1..=3 {
        c.send(id, send()).await;
    }
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(c.recv().await);
    }
    replies.sort_by_key(|f| f.id);
    assert!(matches!(replies[0].body, Some(Body::SendReply(_))));
    assert!(matches!(replies[1].body, Some(Body::SendReply(_))));
    match &replies[2].body {
        Some(Body::Error(e)) => assert_eq!(e.code, ErrorCode::RateLimited as i32),
        other => panic!("expected RATE_LIMITED, got {other:?}"),
    }
    c.send(9, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(c.recv().await.id, 9, "still open");
}

#[tokio::test]
async fn an_address_past_its_connection_limit_is_refused() {
    let h = Harness::start().await;
    let mut config = h.config();
    config.max_connections_per_ip = 1;
    let comet = h.comet(config).await;
    let (_first, _) = comet.login(&h, "alice", &[]).await;
    let mut second = comet.client().await;
    second.expect_error(ErrorCode::TooManyConnections).await;
    second.expect_closed().await;
}

#[tokio::test]
async fn a_repeated_join_is_answered_without_asking_logic() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    let join = Body::Join(Join {
        room: "r".into(),
        ..Join::default()
    });
    c.send(1, join.clone()).await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(r)) if r.head.is_some()));
    let reads = |h: &Harness| h.logic.count(|c| matches!(c, Call::Sync(_)));
    let before = reads(&h);
    // Already in: answered at once, with no call to logic.
    c.send(2, join.clone()).await;
    let reply = c.recv().await;
    assert!(matches!(reply.body, Some(Body::JoinReply(r)) if r.head.is_none()));
    assert_eq!(reads(&h), before);
}

#[tokio::test]
async fn joins_and_leaves_are_rate_limited() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            join_rate: 1,
            ..h.config()
        })
        .await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    c.send(
        1,
        Body::Join(Join {
            room: "r".into(),
            ..Join::default()
        }),
    )
    .await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(_))));
    // The burst of one is spent: the next is refused, and the connection
    // stays.
    c.send(2, Body::Leave(Leave { room: "r".into() })).await;
    assert_eq!(c.expect_error(ErrorCode::RateLimited).await.id, 2);
    c.send(3, Body::Heartbeat(Heartbeat {})).await;
    assert_eq!(c.recv().await.id, 3);
}

#[tokio::test]
async fn a_heartbeat_logic_refuses_closes_the_connection_with_a_kick() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "replaced", &[]).await;
    c.send(1, Body::Heartbeat(Heartbeat {})).await;
    let frame = c.recv().await;
    let Some(Body::Kick(kick)) = frame.body else {
        panic!("expected a Kick, got {frame:?}")
    };
    assert!(
        kick.reason.contains("logged in elsewhere"),
        "{}",
        kick.reason
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn the_device_id_goes_to_logic_at_open_and_with_every_heartbeat() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut c = comet.client().await;
    c.send(
        1,
        Body::Auth(Auth {
            token: h.token("alice"),
            device: "laptop-1".into(),
            ..Auth::default()
        }),
    )
    .await;
    assert!(matches!(c.recv().await.body, Some(Body::AuthReply(_))));
    let open = h
        .logic
        .wait_for(|call| match call {
            Call::Open(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(open.device, "laptop-1");
    c.send(2, Body::Heartbeat(Heartbeat {})).await;
    let beat = h
        .logic
        .wait_for(|call| match call {
            Call::Heartbeat(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(beat.device, "laptop-1");

    // A malformed device id is refused at the handshake.
    let mut bad = comet.client().await;
    bad.send(
        1,
        Body::Auth(Auth {
            token: h.token("alice"),
            device: "not ok".into(),
            ..Auth::default()
        }),
    )
    .await;
    bad.expect_error(ErrorCode::BadRequest).await;
}

#[tokio::test]
async fn a_member_may_ask_how_many_are_in_its_room_and_no_one_else() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let (mut c, _) = comet.login(&h, "alice", &["lobby"]).await;
    c.send(
        1,
        Body::RoomOnline(courier_proto::client::RoomOnline {
            room: "lobby".into(),
        }),
    )
    .await;
    let reply = c.recv().await;
    let Some(Body::RoomOnlineReply(r)) = reply.body else {
        panic!("expected RoomOnlineReply, got {reply:?}")
    };
    // The fake logic answers the room name's length.
    assert_eq!((reply.id, r.room.as_str(), r.connections), (1, "lobby", 5));
    // Not a member: refused, and logic is not asked.
    c.send(
        2,
        Body::RoomOnline(courier_proto::client::RoomOnline { room: "ops".into() }),
    )
    .await;
    assert_eq!(c.expect_error(ErrorCode::NotInRoom).await.id, 2);
}

#[tokio::test]
async fn syncs_have_their_own_budget() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            sync_rate: 2,
            join_rate: 1,
            ..h.config()
        })
        .await;
    let (mut c, _) = comet.login(&h, "alice", &[]).await;
    let sync = Body::Sync(courier_proto::client::Sync {
        limit: 10,
        ..courier_proto::client::Sync::default()
    });
    let reads = |h: &Harness| h.logic.count(|c| matches!(c, Call::Sync(_)));
    let before = reads(&h);
    for id in 1..=2 {
        c.send(id, sync.clone()).await;
        let reply = c.recv().await;
        assert!(matches!(reply.body, Some(Body::SyncReply(_))), "{reply:?}");
    }
    // The burst of two is spent: the third reads nothing from logic.
    c.send(3, sync).await;
    assert_eq!(c.expect_error(ErrorCode::RateLimited).await.id, 3);
    assert_eq!(reads(&h), before + 2);
    // Joins draw on their own budget, untouched by the syncs.
    c.send(
        4,
        Body::Join(Join {
            room: "r".into(),
            ..Join::default()
        }),
    )
    .await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(_))));
}
