//! The gRPC service comets call, over a real channel against memory backends.
#![allow(clippy::unwrap_used)]

mod common;

use common::{decoded, next_envelope, start, TestLogic};
use courier_cluster::Session;
use courier_logic::LoginPolicy;
use courier_proto::client::{Send, Target};
use courier_proto::logic::logic_client::LogicClient;
use courier_proto::logic::{
    open_result, CloseSessionsRequest, ClosedSession, CometStartedRequest, ConnectRequest,
    HeartbeatRequest, OpenSessionsRequest, RenewOnlineRequest, RoomsChangedRequest, SendRequest,
};
use courier_proto::queue::envelope::Kind;
use courier_runtime::cluster_auth::Stamp;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type Comet = LogicClient<InterceptedService<Channel, Stamp>>;

async fn start_with_policy(policy: LoginPolicy) -> (TestLogic, Comet) {
    let mut config = common::config();
    config.login_policy = policy;
    config.heartbeat = std::time::Duration::from_secs(12);
    let t = start(config).await;
    let client = common::comet_client(&t.grpc).await;
    (t, client)
}

fn connect(comet: &str, uid: &str, key: &str) -> ConnectRequest {
    ConnectRequest {
        comet_id: comet.into(),
        uid: uid.into(),
        key: key.into(),
        ..ConnectRequest::default()
    }
}

/// An upstream `Send` from alice's connection `ka` on comet `c1`.
fn send_from_alice(to: Target, data: impl Into<bytes::Bytes>, client_msg_id: &str) -> SendRequest {
    SendRequest {
        comet_id: "c1".into(),
        uid: "alice".into(),
        key: "ka".into(),
        send: Some(Send {
            to: Some(to),
            op: 1,
            data: data.into(),
            client_msg_id: client_msg_id.into(),
        }),
    }
}

async fn keys_of(t: &TestLogic, uid: &str) -> Vec<String> {
    let mut keys: Vec<_> = t
        .backends
        .sessions
        .user_sessions(uid)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn multi_policy_keeps_every_device() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    let reply = c.open_session(connect("c1", "alice", "k1")).await.unwrap();
    assert_eq!(reply.into_inner().heartbeat_secs, 12);
    c.open_session(connect("c2", "alice", "k2")).await.unwrap();
    assert_eq!(keys_of(&t, "alice").await, ["k1", "k2"]);

    c.open_session(connect("c1", "bob", "k3")).await.unwrap();
    let closed = |uid: &str, key: &str| ClosedSession {
        uid: uid.into(),
        key: key.into(),
    };
    c.close_sessions(CloseSessionsRequest {
        comet_id: "c1".into(),
        sessions: vec![closed("alice", "k1"), closed("bob", "k3")],
    })
    .await
    .unwrap();
    assert_eq!(keys_of(&t, "alice").await, ["k2"]);
    assert!(keys_of(&t, "bob").await.is_empty());
    // Closing again (a retried batch) is harmless.
    c.close_sessions(CloseSessionsRequest {
        comet_id: "c1".into(),
        sessions: vec![closed("alice", "k1")],
    })
    .await
    .unwrap();
    // A batch with a malformed entry is refused whole, naming the field.
    let refused = c
        .close_sessions(CloseSessionsRequest {
            comet_id: "c2".into(),
            sessions: vec![closed("alice", "k2"), closed("", "k9")],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("uid"),
        "{}",
        refused.message()
    );
    assert_eq!(keys_of(&t, "alice").await, ["k2"]);
}

#[tokio::test]
async fn a_comet_that_starts_again_takes_nothing_of_its_previous_process() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    c.open_session(connect("c1", "alice", "old-1"))
        .await
        .unwrap();
    c.open_session(connect("c2", "alice", "other"))
        .await
        .unwrap();
    c.rooms_changed(RoomsChangedRequest {
        comet_id: "c1".into(),
        added: vec!["lobby".into()],
        removed: vec![],
    })
    .await
    .unwrap();

    c.comet_started(CometStartedRequest {
        comet_id: "c1".into(),
    })
    .await
    .unwrap();
    assert_eq!(keys_of(&t, "alice").await, ["other"]);
    let rooms = t.backends.sessions.room_comets("lobby").await.unwrap();
    assert!(rooms.is_empty(), "{rooms:?}");
}

#[tokio::test]
async fn kick_old_policy_kicks_other_devices() {
    let (t, mut c) = start_with_policy(LoginPolicy::KickOld).await;
    let consumer = t.backends.queue.subscribe("test").await.unwrap();
    c.open_session(connect("c1", "alice", "k1")).await.unwrap();
    c.open_session(connect("c1", "alice", "k2")).await.unwrap();
    assert_eq!(keys_of(&t, "alice").await, ["k2"]);

    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("alice"));
    let Kind::Kick(kick) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(kick.comet_id, "c1");
    assert_eq!(kick.keys, ["k1"]);
    assert_eq!(kick.reason, "logged in elsewhere");

    // Re-opening the same key kicks nobody.
    c.open_session(connect("c1", "alice", "k2")).await.unwrap();
    c.open_session(connect("c2", "alice", "k3")).await.unwrap();
    let (_, kind) = next_envelope(consumer.as_ref()).await;
    let Kind::Kick(kick) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        (kick.comet_id.as_str(), kick.keys),
        ("c1", vec!["k2".to_owned()])
    );
    assert_eq!(keys_of(&t, "alice").await, ["k3"]);
}

#[tokio::test]
async fn reject_new_policy_refuses_a_second_session() {
    let (t, mut c) = start_with_policy(LoginPolicy::RejectNew).await;
    c.open_session(connect("c1", "alice", "k1")).await.unwrap();
    let refused = c
        .open_session(connect("c2", "alice", "k2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.message(), "already online");
    assert_eq!(keys_of(&t, "alice").await, ["k1"]);
    // The same connection may re-open; another user is unaffected.
    c.open_session(connect("c1", "alice", "k1")).await.unwrap();
    c.open_session(connect("c2", "bob", "k9")).await.unwrap();
}

#[tokio::test]
async fn a_batch_of_opens_is_answered_one_by_one_in_order() {
    let (t, mut c) = start_with_policy(LoginPolicy::RejectNew).await;
    c.open_session(connect("c1", "alice", "k1")).await.unwrap();
    let reply = c
        .open_sessions(OpenSessionsRequest {
            sessions: vec![
                connect("c2", "bob", "kb"),
                // alice is online elsewhere: this one alone is refused.
                connect("c2", "alice", "k2"),
                connect("c2", "carol", "kc"),
                connect("c2", "", "kx"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let outcome: Vec<Result<u32, (Code, String)>> = reply
        .results
        .into_iter()
        .map(|r| match r.result.unwrap() {
            open_result::Result::Opened(reply) => Ok(reply.heartbeat_secs),
            open_result::Result::Refused(refused) => {
                Err((Code::from_i32(refused.code), refused.message))
            }
        })
        .collect();
    assert_eq!(outcome.len(), 4, "{outcome:?}");
    assert_eq!(outcome[0], Ok(12));
    assert_eq!(
        outcome[1],
        Err((Code::FailedPrecondition, "already online".into()))
    );
    assert_eq!(outcome[2], Ok(12));
    assert!(
        matches!(&outcome[3], Err((Code::InvalidArgument, m)) if m.starts_with("uid")),
        "{outcome:?}"
    );
    assert_eq!(keys_of(&t, "alice").await, ["k1"]);
    assert_eq!(keys_of(&t, "bob").await, ["kb"]);
    assert_eq!(keys_of(&t, "carol").await, ["kc"]);

    // A batch beyond the limit is refused whole, and opens nothing.
    let too_many = (0..1_025)
        .map(|i| connect("c3", &format!("u{i}"), &format!("k{i}")))
        .collect();
    let refused = c
        .open_sessions(OpenSessionsRequest { sessions: too_many })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(keys_of(&t, "u0").await.is_empty());
}

fn heartbeat_of(comet: &str, uid: &str, key: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        comet_id: comet.into(),
        uid: uid.into(),
        key: key.into(),
        ..HeartbeatRequest::default()
    }
}

#[tokio::test]
async fn a_heartbeat_cannot_bring_back_a_session_kick_old_replaced() {
    let (t, mut c) = start_with_policy(LoginPolicy::KickOld).await;
    c.open_session(connect("c1", "alice", "k1")).await.unwrap();
    c.open_session(connect("c2", "alice", "k2")).await.unwrap();
    assert_eq!(keys_of(&t, "alice").await, ["k2"]);
    // The old connection's heartbeat was already on its way.
    let refused = c
        .heartbeat(heartbeat_of("c1", "alice", "k1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("logged in elsewhere"));
    assert_eq!(keys_of(&t, "alice").await, ["k2"], "not resurrected");
    // The live one's heartbeat is fine.
    c.heartbeat(heartbeat_of("c2", "alice", "k2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn reject_new_lets_the_same_device_replace_its_half_open_connection() {
    let (t, mut c) = start_with_policy(LoginPolicy::RejectNew).await;
    let consumer = t.backends.queue.subscribe("test").await.unwrap();
    let on = |comet: &str, key: &str, device: &str| ConnectRequest {
        device: device.into(),
        ..connect(comet, "alice", key)
    };
    c.open_session(on("c1", "k1", "laptop")).await.unwrap();
    // The laptop switched networks: its old connection still looks alive.
    c.open_session(on("c2", "k2", "laptop")).await.unwrap();
    assert_eq!(keys_of(&t, "alice").await, ["k2"]);
    let (_, kind) = next_envelope(consumer.as_ref()).await;
    let Kind::Kick(kick) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        (kick.comet_id.as_str(), kick.keys),
        ("c1", vec!["k1".to_owned()])
    );
    // Another device is still refused, as is a client with no device id.
    for device in ["phone", ""] {
        let refused = c.open_session(on("c3", "k3", device)).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
    }
    // A malformed device id is a bad request.
    let bad = c.open_session(on("c3", "k4", "a b")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn heartbeat_restores_a_forgotten_session() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    let s = Session {
        uid: "alice".into(),
        key: "k1".into(),
        comet_id: "c1".into(),
        device: "laptop".into(),
    };
    assert!(keys_of(&t, "alice").await.is_empty());
    c.heartbeat(HeartbeatRequest {
        comet_id: s.comet_id.clone(),
        uid: s.uid.clone(),
        key: s.key.clone(),
        device: s.device.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        t.backends.sessions.key_session("k1").await.unwrap(),
        Some(s)
    );

    let bad = c.heartbeat(HeartbeatRequest::default()).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn send_goes_through_the_publish_path() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    let consumer = t.backends.queue.subscribe("test").await.unwrap();
    c.open_session(connect("c2", "bob", "kb")).await.unwrap();

    let reply = c
        .send(send_from_alice(Target::user("bob"), "hello bob", "m1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.msg_id.is_empty());

    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("bob"));
    let Kind::Keys(push) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(
        (push.comet_id.as_str(), push.keys),
        ("c2", vec!["kb".to_owned()])
    );
    let m = decoded(&push.message);
    assert_eq!(m.msg_id, reply.msg_id);
    assert_eq!(m.from, "alice");
    assert_eq!(&m.data[..], b"hello bob");

    // Rooms: registered by RoomsChanged, then a send reaches those comets.
    c.rooms_changed(RoomsChangedRequest {
        comet_id: "c2".into(),
        added: vec!["lobby".into(), "gone".into()],
        removed: vec![],
    })
    .await
    .unwrap();
    c.rooms_changed(RoomsChangedRequest {
        comet_id: "c2".into(),
        added: vec![],
        removed: vec!["gone".into()],
    })
    .await
    .unwrap();
    assert_eq!(
        t.backends.sessions.room_comets("lobby").await.unwrap(),
        ["c2"]
    );
    assert!(t
        .backends
        .sessions
        .room_comets("gone")
        .await
        .unwrap()
        .is_empty());
    c.send(send_from_alice(Target::room("lobby"), "hi all", ""))
        .await
        .unwrap();
    let (key, kind) = next_envelope(consumer.as_ref()).await;
    assert_eq!(key.as_deref(), Some("lobby"));
    let Kind::Room(push) = kind else {
        panic!("{kind:?}")
    };
    assert_eq!(push.comet_ids, ["c2"]);
    assert_eq!(decoded(&push.message).from, "alice");

    for to in [Some(Target::key("kb")), Some(Target::all()), None] {
        let mut request = send_from_alice(Target::all(), "x", "");
        request.send.as_mut().unwrap().to = to;
        let err = c.send(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn room_online_sums_the_comets_reports() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    for (comet, n) in [("c1", 2), ("c2", 3)] {
        c.renew_online(RenewOnlineRequest {
            comet_id: comet.into(),
            connections: n,
            rooms: [("lobby".to_owned(), n)].into_iter().collect(),
            ..RenewOnlineRequest::default()
        })
        .await
        .unwrap();
    }
    let reply = c
        .room_online(courier_proto::logic::RoomOnlineRequest {
            room: "lobby".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.connections, 5);
    let bad = c
        .room_online(courier_proto::logic::RoomOnlineRequest {
            room: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    drop(t);
}

#[tokio::test]
async fn renew_online_feeds_the_online_counts() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    c.renew_online(RenewOnlineRequest {
        comet_id: "c1".into(),
        connections: 3,
        rooms: [("lobby".to_owned(), 2)].into_iter().collect(),
        ..RenewOnlineRequest::default()
    })
    .await
    .unwrap();
    let online = t.backends.sessions.online().await.unwrap();
    assert_eq!(online.connections, 3);
    assert_eq!(online.comets, [("c1".to_owned(), 3)]);
    assert_eq!(t.backends.sessions.room_online("lobby").await.unwrap(), 2);
}

#[tokio::test]
async fn a_retried_send_keeps_its_msg_id_and_oversized_data_is_refused() {
    let (_t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    c.open_session(connect("c2", "bob", "kb")).await.unwrap();
    let send = |client_msg_id: &str, data: Vec<u8>| {
        send_from_alice(Target::user("bob"), data, client_msg_id)
    };
    let first = c
        .send(send("m1", b"hi".to_vec()))
        .await
        .unwrap()
        .into_inner();
    let retry = c
        .send(send("m1", b"hi".to_vec()))
        .await
        .unwrap()
        .into_inner();
    let other = c
        .send(send("m2", b"hi".to_vec()))
        .await
        .unwrap()
        .into_inner();
    let anonymous = c.send(send("", b"hi".to_vec())).await.unwrap().into_inner();
    let anonymous_again = c.send(send("", b"hi".to_vec())).await.unwrap().into_inner();
    assert_eq!(first.msg_id, retry.msg_id, "a retry is the same message");
    assert_ne!(first.msg_id, other.msg_id);
    assert_ne!(anonymous.msg_id, anonymous_again.msg_id);

    let max = courier_logic::LogicConfig::default().max_data;
    let status = c
        .send(send("big", vec![b'x'; max + 1]))
        .await
        .expect_err("oversized data is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("at most"), "{}", status.message());
}

#[tokio::test]
async fn a_call_without_the_cluster_secret_is_refused() {
    let t = start(common::config()).await;
    let mut stranger = LogicClient::connect(t.grpc.clone()).await.unwrap();
    let refused = stranger
        .open_session(connect("c1", "alice", "k1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = stranger
        .send(send_from_alice(Target::user("bob"), "forged", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(t
        .backends
        .sessions
        .user_sessions("alice")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_send_reaches_only_users_courier_knows() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    let inbox_of = |uid: &'static str| {
        let inbox = t.backends.inbox.clone();
        async move {
            let heads = inbox
                .heads(&[courier_cluster::inbox::Stream::User(uid)])
                .await
                .unwrap();
            heads[0]
        }
    };

    // Nobody: refused, and no inbox is created for the name.
    let err = c
        .send(send_from_alice(Target::user("ghost"), "hi", "g1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("ghost"), "{}", err.message());
    assert_eq!(inbox_of("ghost").await.epoch, 0, "nothing stored for ghost");

    // An account, a uid a backend pushed to, a uid connected now: all known.
    let registered = t
        .client
        .post(t.url("/users"))
        .json(&serde_json::json!({"username": "carol", "password": "secret-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let pushed = t
        .push(
            "/push/users",
            serde_json::json!({"uids": ["dave"], "data": 1}),
        )
        .await;
    assert_eq!(pushed.status(), 202);
    c.open_session(connect("c2", "bob", "kb")).await.unwrap();
    for (uid, before) in [("carol", 0), ("dave", 1), ("bob", 0)] {
        let reply = c
            .send(send_from_alice(Target::user(uid), "hi", uid))
            .await
            .unwrap_or_else(|e| panic!("send to {uid}: {e:?}"))
            .into_inner();
        assert_eq!(reply.seq, before + 1, "{uid}");
    }
}

#[tokio::test]
async fn a_sender_over_its_quota_is_refused_and_stores_nothing() {
    let mut config = common::config();
    config.send_quota_per_minute = 3;
    let t = start(config).await;
    let mut c = common::comet_client(&t.grpc).await;
    c.open_session(connect("c2", "bob", "kb")).await.unwrap();
    for n in 1..=3u64 {
        let reply = c
            .send(send_from_alice(Target::user("bob"), "hi", &format!("q{n}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.seq, n);
    }
    let err = c
        .send(send_from_alice(Target::user("bob"), "hi", "q4"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("3 messages per minute"),
        "{}",
        err.message()
    );
    let head = t
        .backends
        .inbox
        .heads(&[courier_cluster::inbox::Stream::User("bob")])
        .await
        .unwrap()[0];
    assert_eq!(head.last_seq, 3, "the refused send stored nothing");

    // Another sender has its own budget.
    let mut from_bob = send_from_alice(Target::user("bob"), "self", "b1");
    from_bob.uid = "bob".into();
    c.send(from_bob).await.unwrap();
}

#[tokio::test]
async fn a_client_msg_id_reused_for_another_message_is_refused() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    c.open_session(connect("c2", "bob", "kb")).await.unwrap();
    let first = c
        .send(send_from_alice(Target::user("bob"), "hi", "m1"))
        .await
        .unwrap()
        .into_inner();
    let err = c
        .send(send_from_alice(Target::user("bob"), "something else", "m1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("client_msg_id"), "{}", err.message());
    // The first stays; the second took nothing.
    let stored = common::inbox_of(&t, "bob").await;
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(
        (m.msg_id.as_str(), &m.data[..]),
        (first.msg_id.as_str(), &b"hi"[..])
    );
}

#[tokio::test]
async fn an_open_refused_for_its_rooms_records_no_session() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    let mut open = connect("c1", "alice", "ka");
    open.rooms = (0..300).map(|i| format!("room-{i}")).collect();
    let err = c.open_session(open).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        t.backends
            .sessions
            .user_sessions("alice")
            .await
            .unwrap()
            .is_empty(),
        "nothing recorded that nobody would close"
    );
}

#[tokio::test]
async fn a_room_page_is_read_only_by_those_its_rules_let_in() {
    let (t, mut c) = start_with_policy(LoginPolicy::Multi).await;
    t.backends
        .rooms
        .set_rule("team", courier_cluster::JoinRule::Members)
        .await
        .unwrap();
    t.backends
        .rooms
        .add_members("team", &["alice".to_owned()])
        .await
        .unwrap();
    let sync = |uid: &str| courier_proto::logic::SyncRequest {
        comet_id: "c1".into(),
        uid: uid.into(),
        key: "k".into(),
        room: "team".into(),
        limit: 10,
        max_bytes: 65_536,
        ..Default::default()
    };
    c.sync(sync("alice")).await.expect("a member reads");
    let err = c.sync(sync("bob")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}
