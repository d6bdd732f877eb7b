//! Delivery guarantees end to end on the embedded system: a message is
//! stored before it is published, a user who was away gets what it missed
//! in order, acks carry over to other devices, retries are idempotent, and
//! rooms keep a history a returning member recovers.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use courier_client::{Client, ClientConfig, Event, Events, Position};
use courier_proto::client::{frame::Body, Auth, AuthReply, Join, Send, SyncReply, Target};
use courier_testkit::FrameClient;
use serde_json::{json, Value};
use support::*;

/// Pushes `data` to `uid` and returns the reply (202 asserted).
#[tokio::test]
async fn a_client_renews_its_token_on_the_live_connection_before_it_expires() {
    let mut config = support::config();
    config.logic.token_ttl = Duration::from_secs(10);
    let system = start_with(config, 1).await;
    let api = Api::new(&system);
    let connected = tokio::time::Instant::now();
    let (_alice, mut events) = user(&system, "alice").await;
    // Past the first token's expiry: the comet closes a connection whose
    // token expired, unless the client handed over a newer one.
    tokio::time::sleep_until(connected + Duration::from_secs(11)).await;
    push(&api, "alice", "still here").await;
    loop {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("an event in time")
            .expect("events open");
        match event {
            Event::Connected { .. } => {}
            Event::Message(m) => {
                assert_eq!(&m.data[..], br#""still here""#);
                break;
            }
            other => panic!("the connection did not survive its first token: {other:?}"),
        }
    }
    system.stop().await;
}

async fn push(api: &Api, uid: &str, data: &str) -> Value {
    let (status, reply) = api
        .post("/push/users", json!({"uids": [uid], "op": 1, "data": data}))
        .await;
    assert_eq!(status, 202, "{reply}");
    reply
}

/// The next event that is not a connection status.
async fn next_event(events: &mut Events) -> Event {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("an event in time")
            .expect("events open");
        if !matches!(event, Event::Connected { .. } | Event::Disconnected { .. }) {
            return event;
        }
    }
}

/// A raw connection authenticated as `name` from inbox position `at`;
/// returns it with its `AuthReply` (the resume page, if any, is next).
async fn raw(system: &courier::System, name: &str, at: Position) -> (FrameClient, AuthReply) {
    let token = token(system, name).await;
    let mut c = FrameClient::connect(system.comets[0].tcp).await;
    let auth = Auth {
        token,
        last_seq: at.seq,
        epoch: at.epoch,
        ..Auth::default()
    };
    c.send(1, Body::Auth(auth)).await;
    match c.recv().await.body {
        Some(Body::AuthReply(reply)) => (c, reply),
        other => panic!("expected AuthReply, got {other:?}"),
    }
}

/// The next frame, which must be a `SyncReply`.
async fn sync_reply(c: &mut FrameClient) -> SyncReply {
    let frame = c.recv().await;
    match frame.body {
        Some(Body::SyncReply(page)) => page,
        other => panic!("expected SyncReply, got {other:?}"),
    }
}

fn texts(page: &SyncReply) -> Vec<String> {
    page.messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect()
}

#[tokio::test]
async fn an_offline_user_gets_every_push_in_order_and_an_ack_marks_them_read() {
    let system = start(1).await;
    let api = Api::new(&system);
    token(&system, "alice").await;
    for i in 1..=3u64 {
        let reply = push(&api, "alice", &format!("m{i}")).await;
        assert_eq!(reply["seq"], i, "stored as seq {i}: {reply}");
    }

    let (alice, mut events) = device(&system, "alice", &[]).await;
    for i in 1..=3u64 {
        let Event::Message(m) = next_event(&mut events).await else {
            panic!("expected a message")
        };
        assert_eq!((text(&m), m.seq), (format!("\"m{i}\""), i));
    }
    assert_eq!(
        next_event(&mut events).await,
        Event::Missed {
            room: None,
            count: 3
        }
    );
    assert_eq!(alice.position().seq, 3);

    // The SDK acked seq 3: a device with no position of its own now starts
    // after it, so its resume page is empty.
    courier_testkit::eventually_async("the ack to be recorded", DEADLINE, || async {
        let (mut c, _) = raw(&system, "alice", Position::default()).await;
        sync_reply(&mut c).await.messages.is_empty()
    })
    .await;
    let (_laptop, mut laptop) = device(&system, "alice", &[]).await;
    push(&api, "alice", "m4").await;
    next_message_is(&mut laptop, br#""m4""#).await;
    system.stop().await;
}

#[tokio::test]
async fn a_client_that_resumes_from_its_position_gets_exactly_what_it_missed() {
    let system = start(1).await;
    let api = Api::new(&system);
    let (first, mut events) = user(&system, "alice").await;
    for i in 1..=3 {
        push(&api, "alice", &format!("m{i}")).await;
        next_message_is(&mut events, format!("\"m{i}\"").as_bytes()).await;
    }
    let kept = first.position();
    assert_eq!(kept.seq, 3);
    first.close().await;
    for i in 4..=6 {
        push(&api, "alice", &format!("m{i}")).await;
    }

    let mut config = ClientConfig::new(system.logic_url(), "alice", PASSWORD);
    config.resume_from = Some(kept);
    let (_again, mut events) = Client::connect(config).await.unwrap();
    for i in 4..=6 {
        next_message_is(&mut events, format!("\"m{i}\"").as_bytes()).await;
    }
    push(&api, "alice", "m7").await;
    next_message_is(&mut events, br#""m7""#).await;
    system.stop().await;
}

#[tokio::test]
async fn a_send_repeated_with_its_client_msg_id_is_stored_and_delivered_once() {
    let system = start(1).await;
    let (_bob, mut bob_events) = user(&system, "bob").await;
    let (mut alice, _) = raw(&system, "alice", Position::default()).await;
    sync_reply(&mut alice).await;
    let send = Send {
        to: Some(Target::user("bob")),
        op: 1,
        data: "hello once".into(),
        client_msg_id: "c-1".into(),
    };
    let mut replies = Vec::new();
    for id in [2, 3] {
        alice.send(id, Body::Send(send.clone())).await;
        match alice.recv().await.body {
            Some(Body::SendReply(r)) => replies.push((r.msg_id, r.seq, r.epoch)),
            other => panic!("expected SendReply, got {other:?}"),
        }
    }
    assert_eq!(replies[0], replies[1], "the repeat returns the original");
    assert_eq!(replies[0].1, 1);
    next_message_is(&mut bob_events, b"hello once").await;
    let api = Api::new(&system);
    push(&api, "bob", "after").await;
    next_message_is(&mut bob_events, br#""after""#).await;
    let (_, page) = api.get("/users/bob/messages").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");
    system.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_push_deliver_once_per_recipient() {
    let system = start(1).await;
    let api = Api::new(&system);
    let (_alice, mut alice_events) = user(&system, "alice").await;
    let (_bob, mut bob_events) = user(&system, "bob").await;
    let (_carol, mut carol_events) = user(&system, "carol").await;

    let body = json!({"uids": ["alice"], "op": 1, "data": "once"});
    let (s1, first) = api
        .post_idempotent("/push/users", "k-1", body.clone())
        .await;
    let (s2, again) = api.post_idempotent("/push/users", "k-1", body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["msg_id"], again["msg_id"]);
    assert_eq!((&first["seq"], &again["seq"]), (&json!(1), &json!(1)));
    assert_eq!(again["repeats"], 1, "{again}");

    // A push to two users, retried with one more recipient: only the new
    // one gets it.
    let two = json!({"uids": ["alice", "bob"], "op": 1, "data": "half"});
    let (status, _) = api.post_idempotent("/push/users", "k-2", two).await;
    assert_eq!(status, 202);
    let three = json!({"uids": ["alice", "bob", "carol"], "op": 1, "data": "half"});
    let (status, retried) = api.post_idempotent("/push/users", "k-2", three).await;
    assert_eq!(status, 202);
    assert_eq!(retried["repeats"], 2, "{retried}");

    next_message_is(&mut alice_events, br#""once""#).await;
    next_message_is(&mut alice_events, br#""half""#).await;
    next_message_is(&mut bob_events, br#""half""#).await;
    next_message_is(&mut carol_events, br#""half""#).await;
    for (uid, events) in [("alice", &mut alice_events), ("bob", &mut bob_events)] {
        push(&api, uid, "marker").await;
        next_message_is(events, br#""marker""#).await;
    }

    let (status, bad) = api
        .post_idempotent(
            "/push/users",
            "has space",
            json!({"uids": ["x"], "data": 1}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    system.stop().await;
}

#[tokio::test]
async fn a_client_pages_back_through_history_to_the_first_message() {
    let system = start(1).await;
    let api = Api::new(&system);
    token(&system, "alice").await;
    let mut epoch = 0;
    for i in 1..=8 {
        epoch = push(&api, "alice", &format!("m{i}")).await["epoch"]
            .as_u64()
            .unwrap();
    }
    let (mut c, reply) = raw(&system, "alice", Position { epoch, seq: 6 }).await;
    let head = reply.inbox.unwrap();
    assert_eq!((head.epoch, head.last_seq, head.first_seq), (epoch, 8, 1));
    assert_eq!(texts(&sync_reply(&mut c).await), ["\"m7\"", "\"m8\""]);

    // Back from below what it resumed at, three at a time, to the first.
    let back = |before_seq: u64| {
        Body::Sync(courier_proto::client::Sync {
            limit: 3,
            epoch,
            before_seq,
            ..Default::default()
        })
    };
    c.send(2, back(7)).await;
    let page = sync_reply(&mut c).await;
    assert_eq!(texts(&page), ["\"m4\"", "\"m5\"", "\"m6\""]);
    assert!(!page.gap && !page.reset);
    c.send(3, back(4)).await;
    let page = sync_reply(&mut c).await;
    assert_eq!(texts(&page), ["\"m1\"", "\"m2\"", "\"m3\""]);
    assert!(!page.gap, "nothing older is gone");
    c.send(4, back(1)).await;
    assert!(sync_reply(&mut c).await.messages.is_empty());

    // A position in both directions is refused; the connection stays.
    c.send(
        5,
        Body::Sync(courier_proto::client::Sync {
            after_seq: 2,
            before_seq: 4,
            limit: 3,
            ..Default::default()
        }),
    )
    .await;
    let refused = c.recv().await;
    assert_eq!(refused.id, 5);
    assert!(matches!(refused.body, Some(Body::Error(_))), "{refused:?}");
    c.send(6, back(3)).await;
    assert_eq!(texts(&sync_reply(&mut c).await), ["\"m1\"", "\"m2\""]);

    // The same over HTTP.
    let (status, body) = api
        .get(&format!(
            "/users/alice/messages?before_seq=6&epoch={epoch}&limit=2"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let seqs: Vec<u64> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(
        (body["gap"].clone(), body["first_seq"].clone()),
        (json!(false), json!(1))
    );
    let (status, body) = api
        .get("/users/alice/messages?before_seq=6&after_seq=2")
        .await;
    assert_eq!(status, 400, "{body}");

    // An epoch the store never had: told, and read from the newest back.
    c.send(
        7,
        Body::Sync(courier_proto::client::Sync {
            limit: 2,
            epoch: epoch ^ 2,
            before_seq: 3,
            ..Default::default()
        }),
    )
    .await;
    let page = sync_reply(&mut c).await;
    assert!(page.reset);
    assert_eq!(texts(&page), ["\"m7\"", "\"m8\""]);
    system.stop().await;
}

#[tokio::test]
async fn a_member_back_in_a_room_recovers_what_it_missed() {
    let system = start(1).await;
    let api = Api::new(&system);
    let room_push = |i: u32| {
        let api = &api;
        async move {
            let (status, reply) = api
                .post("/push/rooms/r", json!({"op": 1, "data": format!("r{i}")}))
                .await;
            assert_eq!(status, 202, "{reply}");
            reply
        }
    };

    let (member, mut events) = device_in(&system, "alice", &["r"]).await;
    room_push(1).await;
    let first = next_message(&mut events).await;
    assert_eq!((text(&first), first.seq), ("\"r1\"".into(), 1));
    let at = member.room_position("r").unwrap();
    member.close().await;
    for i in 2..=6 {
        room_push(i).await;
    }

    // Back with the position it kept: the join recovers the five.
    let (mut c, _) = raw(&system, "alice", Position::default()).await;
    sync_reply(&mut c).await;
    let join = Join {
        room: "r".into(),
        last_seq: at.seq,
        epoch: at.epoch,
    };
    c.send(2, Body::Join(join)).await;
    assert!(matches!(c.recv().await.body, Some(Body::JoinReply(_))));
    let page = sync_reply(&mut c).await;
    assert_eq!(page.room, "r");
    assert_eq!(
        texts(&page),
        ["\"r2\"", "\"r3\"", "\"r4\"", "\"r5\"", "\"r6\""]
    );

    // Backends read the history over HTTP, and the SDK through `history`.
    let (status, body) = api.get("/rooms/r/messages?after_seq=4").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["last_seq"], 6);
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    let (reader, _) = device_in(&system, "bob", &["r"]).await;
    let recent = reader.history(Some("r"), 3).await.unwrap();
    let recent: Vec<String> = recent.messages.iter().map(text).collect();
    assert_eq!(recent, ["\"r4\"", "\"r5\"", "\"r6\""]);
    system.stop().await;
}

/// Registers `name` if needed and connects a device in `rooms`.
async fn device_in(system: &courier::System, name: &str, rooms: &[&str]) -> (Client, Events) {
    token(system, name).await;
    device(system, name, rooms).await
}

#[tokio::test]
async fn history_pages_over_the_comets_sync_rate_wait_instead_of_failing() {
    let mut config = support::config();
    config.comet.sync_rate = 1;
    let system = start_with(config, 1).await;
    let api = Api::new(&system);
    let (reader, _) = device_in(&system, "alice", &[]).await;
    for i in 1..=6 {
        push(&api, "alice", &format!("m{i}")).await;
    }
    // One page a second: the second and third pages are refused at first,
    // and the SDK asks again until the comet takes them.
    let mut page = reader.history(None, 2).await.unwrap();
    let mut seen: Vec<String> = page.messages.iter().map(text).collect();
    while let Some(before) = page.older() {
        page = reader.history_before(None, before, 2).await.unwrap();
        let mut texts: Vec<String> = page.messages.iter().map(text).collect();
        texts.append(&mut seen);
        seen = texts;
    }
    assert_eq!(
        seen,
        ["\"m1\"", "\"m2\"", "\"m3\"", "\"m4\"", "\"m5\"", "\"m6\""]
    );
    system.stop().await;
}
