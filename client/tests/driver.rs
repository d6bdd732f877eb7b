//! The SDK's driver against fake comets that speak the frame protocol over
//! an in-memory network (the SDK runs over any byte stream): auth,
//! request/reply matching, pushes and dedup, heartbeats, reconnect to
//! another comet with retried requests, drain, kick, close. Time is paused,
//! so heartbeats and timeouts run on tokio's virtual clock.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_client::{
    BoxStream, Client, ClientConfig, ClientError, CometAddr, Connector, Event, Events, History,
    LoginReply, Position, Transport,
};
use courier_proto::client::{
    frame::Body, Auth, AuthReply, ErrorCode, Frame, HeartbeatReply, JoinReply, Kick, Message, Push,
    Reconnect, SendReply, StreamHead, Sync, SyncReply, Target,
};
use courier_testkit::FrameClient;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

type Conn = FrameClient<DuplexStream>;

/// An in-memory network: the client's transport opens a duplex pipe to a
/// comet by id; a comet nobody serves refuses the connection.
#[derive(Clone, Default)]
struct Net(Arc<Mutex<HashMap<String, mpsc::UnboundedSender<DuplexStream>>>>);

impl Transport for Net {
    fn connect<'a>(&'a self, comet: &'a CometAddr) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(async move {
            let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            let comet = self.0.lock().get(&comet.id).cloned().ok_or_else(refused)?;
            let (client, server) = tokio::io::duplex(1 << 16);
            comet.send(server).map_err(|_| refused())?;
            Ok(Box::new(client) as BoxStream)
        })
    }
}

impl Net {
    /// A fake comet reachable on this network as `id`.
    fn comet(&self, id: &str) -> FakeComet {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0.lock().insert(id.to_owned(), tx);
        FakeComet {
            id: id.into(),
            incoming: tokio::sync::Mutex::new(rx),
        }
    }

    /// Connects a client (config `rooms`) over this network to `comets`.
    async fn connect(&self, comets: Vec<CometAddr>, rooms: &[&str]) -> (Client, Events) {
        Client::connect_with(self.config(rooms), login_reply(comets))
            .await
            .unwrap()
    }

    fn config(&self, rooms: &[&str]) -> ClientConfig {
        config(rooms).with_connector(Connector::new(self.clone()))
    }
}

struct FakeComet {
    id: String,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<DuplexStream>>,
}

impl FakeComet {
    fn addr(&self) -> CometAddr {
        CometAddr {
            id: self.id.clone(),
            tcp: format!("{}.test:1", self.id),
            ws: String::new(),
        }
    }

    async fn accept(&self) -> Conn {
        let stream = tokio::time::timeout(WAIT, self.incoming.lock().await.recv())
            .await
            .expect("client connects")
            .unwrap();
        FrameClient::new(stream)
    }

    /// Accepts, reads `Auth`, answers `AuthReply` with `key`.
    async fn accept_auth(&self, key: &str, heartbeat_secs: u32) -> (Conn, Auth) {
        let mut conn = self.accept().await;
        let frame = conn.recv().await;
        let Some(Body::Auth(auth)) = frame.body else {
            panic!("first frame must be Auth, got {frame:?}")
        };
        let reply = AuthReply {
            uid: "alice".into(),
            key: key.into(),
            heartbeat_secs,
            rooms: auth.rooms.clone(),
            ..AuthReply::default()
        };
        conn.send(frame.id, Body::AuthReply(reply)).await;
        // The inbox page a comet always sends next: nothing missed, and the
        // inbox (epoch 1) stands at seq 4, or where the client said it was.
        let head = StreamHead {
            epoch: 1,
            last_seq: auth.last_seq.max(4),
            first_seq: 1,
        };
        let page = SyncReply {
            head: Some(head),
            ..SyncReply::default()
        };
        conn.send(0, Body::SyncReply(page)).await;
        (conn, auth)
    }
}

/// The next frame that is not a heartbeat, a sync (both answered: the
/// streams stand still) or an ack.
async fn recv_request(conn: &mut Conn) -> Frame {
    loop {
        let frame = conn.recv().await;
        match frame.body {
            Some(Body::Heartbeat(_)) => {
                conn.send(frame.id, Body::HeartbeatReply(HeartbeatReply::default()))
                    .await;
            }
            Some(Body::Sync(sync)) => {
                let page = SyncReply {
                    room: sync.room,
                    head: Some(StreamHead {
                        epoch: 1,
                        last_seq: sync.after_seq,
                        first_seq: 1,
                    }),
                    ..SyncReply::default()
                };
                conn.send(frame.id, Body::SyncReply(page)).await;
            }
            Some(Body::Ack(_)) => {}
            _ => return frame,
        }
    }
}

/// The next frame that is not a heartbeat (answered) or an ack.
async fn recv_frame(conn: &mut Conn) -> Frame {
    loop {
        let frame = conn.recv().await;
        match frame.body {
            Some(Body::Heartbeat(_)) => {
                conn.send(frame.id, Body::HeartbeatReply(HeartbeatReply::default()))
                    .await;
            }
            Some(Body::Ack(_)) => {}
            _ => return frame,
        }
    }
}

/// The next frame, which must be a `Sync`, with its id.
async fn recv_sync(conn: &mut Conn) -> (u64, Sync) {
    let frame = recv_frame(conn).await;
    match frame.body {
        Some(Body::Sync(sync)) => (frame.id, sync),
        other => panic!("expected Sync, got {other:?}"),
    }
}

fn head(epoch: u64, last_seq: u64, first_seq: u64) -> StreamHead {
    StreamHead {
        epoch,
        last_seq,
        first_seq,
    }
}

/// A page of `room` ("" the inbox) holding chat messages `seqs` (epoch 1).
fn page_of(room: &str, seqs: impl IntoIterator<Item = u64>, head: StreamHead) -> SyncReply {
    let to = match room {
        "" => Target::user("alice"),
        room => Target::room(room),
    };
    SyncReply {
        room: room.into(),
        head: Some(head),
        messages: seqs
            .into_iter()
            .map(|seq| message(&format!("{room}-{seq}"), seq, to.clone(), "x"))
            .collect(),
        ..SyncReply::default()
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Connects a client in `rooms` to a new fake comet and answers the
/// head-only syncs the driver sends for rooms new to it: every room stands
/// at seq `at` of epoch 1. Returns after the `Connected` event.
async fn connected_in(rooms: &[&str], at: u64) -> (Client, Events, Conn, FakeComet) {
    let net = Net::default();
    let a = net.comet("comet-a");
    let (connected, accepted) =
        tokio::join!(net.connect(vec![a.addr()], rooms), a.accept_auth("k", 30));
    let (client, mut events) = connected;
    let (mut conn, _) = accepted;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    for _ in rooms {
        let (id, sync) = recv_sync(&mut conn).await;
        assert_eq!(sync.limit, 0, "where a new room stands: {sync:?}");
        let reply = page_of(&sync.room, [], head(1, at, 1));
        conn.send(id, Body::SyncReply(reply)).await;
    }
    (client, events, conn, a)
}

async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("events open")
}

fn config(rooms: &[&str]) -> ClientConfig {
    let mut config =
        ClientConfig::new("http://127.0.0.1:9", "alice", "pw").with_rooms(rooms.iter().copied());
    config.reconnect_min = Duration::from_millis(10);
    config.reconnect_max = Duration::from_millis(50);
    config.request_timeout = Duration::from_secs(3);
    config
}

fn login_reply(comets: Vec<CometAddr>) -> LoginReply {
    LoginReply {
        uid: "alice".into(),
        token: "tok".into(),
        expires_in: 3600,
        heartbeat_secs: 30,
        comets,
    }
}

/// A chat message from bob; stored (seq > 0) in epoch 1.
fn message(id: &str, seq: u64, to: Target, text: &str) -> Message {
    Message {
        seq,
        epoch: u64::from(seq > 0),
        from: "bob".into(),
        to: Some(to),
        op: courier_proto::op::CHAT,
        data: Bytes::from(text.to_owned()),
        sent_at_ms: 1_700_000_000_000,
        ..courier_testkit::messages::message(id)
    }
}

fn push(messages: Vec<Message>) -> Frame {
    Frame::new(0, Body::Push(Push { messages }))
}

#[tokio::test(start_paused = true)]
async fn requests_pushes_reconnect_drain_and_kick() {
    let net = Net::default();
    let a = net.comet("comet-a");
    let b = net.comet("comet-b");
    let comets = vec![a.addr(), b.addr()];

    let (connect, accepted) =
        tokio::join!(net.connect(comets, &["lobby"]), a.accept_auth("key-a", 30));
    let (client, mut events) = connect;
    let (mut conn_a, auth) = accepted;
    assert_eq!(auth.token, "tok");
    assert_eq!(auth.rooms, vec!["lobby"]);
    assert_eq!(
        next_event(&mut events).await,
        Event::Connected {
            comet_id: "comet-a".into(),
            key: "key-a".into()
        }
    );
    assert_eq!(client.key().as_deref(), Some("key-a"));
    assert_eq!(client.comet_id().as_deref(), Some("comet-a"));
    assert_eq!(client.uid(), "alice");

    // A send is answered by the frame with its id.
    let sender = client.clone();
    let send =
        tokio::spawn(async move { sender.send_to_room("lobby", 1, Bytes::from("hello")).await });
    let frame = recv_request(&mut conn_a).await;
    let Some(Body::Send(s)) = &frame.body else {
        panic!("expected Send, got {frame:?}")
    };
    assert_eq!(s.to, Some(Target::room("lobby")));
    assert_eq!(&s.data[..], b"hello");
    assert!(!s.client_msg_id.is_empty());
    let reply = SendReply {
        msg_id: "m-1".into(),
        seq: 0,
        epoch: 0,
    };
    conn_a
        .send_frame(Frame::new(frame.id, Body::SendReply(reply)))
        .await;
    assert_eq!(send.await.unwrap().unwrap().msg_id, "m-1");

    // Join updates rooms; an Error frame with the request's id fails it.
    let joiner = client.clone();
    let join = tokio::spawn(async move { joiner.join("r2").await });
    let frame = recv_request(&mut conn_a).await;
    assert!(matches!(&frame.body, Some(Body::Join(j)) if j.room == "r2"));
    let reply = JoinReply {
        room: "r2".into(),
        ..JoinReply::default()
    };
    conn_a
        .send_frame(Frame::new(frame.id, Body::JoinReply(reply)))
        .await;
    join.await.unwrap().unwrap();
    assert_eq!(client.rooms(), vec!["lobby", "r2"]);

    let leaver = client.clone();
    let leave = tokio::spawn(async move { leaver.leave("nope").await });
    let frame = recv_request(&mut conn_a).await;
    let err = Frame::error(frame.id, ErrorCode::BadRequest, "not a member");
    conn_a.send_frame(err).await;
    match leave.await.unwrap() {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::BadRequest as i32);
            assert_eq!(message, "not a member");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert_eq!(
        client.rooms(),
        vec!["lobby", "r2"],
        "failed leave changes nothing"
    );

    // Pushes: one event per message, duplicates dropped, personal seq acked.
    let x1 = message("x1", 0, Target::room("lobby"), "one");
    let x2 = message("x2", 5, Target::user("alice"), "two");
    conn_a
        .send_frame(push(vec![x1.clone(), x1.clone(), x2.clone()]))
        .await;
    conn_a
        .send_frame(push(vec![
            x2.clone(),
            message("x3", 0, Target::room("lobby"), "three"),
        ]))
        .await;
    assert_eq!(next_event(&mut events).await, Event::Message(x1));
    assert_eq!(next_event(&mut events).await, Event::Message(x2));
    let Event::Message(m) = next_event(&mut events).await else {
        panic!("expected a message")
    };
    assert_eq!(m.msg_id, "x3", "the replayed x2 was dropped");
    let ack = loop {
        if let Some(Body::Ack(ack)) = conn_a.recv().await.body {
            break ack;
        }
    };
    assert_eq!(ack.seq, 5);

    // A request in flight when the connection drops is sent again on the next one,
    // and the reconnect goes to the other comet although comet-a still accepts.
    let sender = client.clone();
    let in_flight =
        tokio::spawn(async move { sender.send_to_user("bob", 1, Bytes::from("psst")).await });
    let frame = recv_request(&mut conn_a).await;
    let Some(Body::Send(first_try)) = frame.body else {
        panic!("expected Send")
    };
    drop(conn_a);
    let Event::Disconnected { .. } = next_event(&mut events).await else {
        panic!("expected Disconnected")
    };
    assert_eq!(client.key(), None);

    let (mut conn_b, auth) = b.accept_auth("key-b", 30).await;
    assert_eq!(
        auth.rooms,
        vec!["lobby", "r2"],
        "joined rooms are re-joined"
    );
    assert_eq!(auth.last_seq, 5, "replay starts after the last shown seq");
    assert_eq!(
        next_event(&mut events).await,
        Event::Connected {
            comet_id: "comet-b".into(),
            key: "key-b".into()
        }
    );
    let frame = recv_request(&mut conn_b).await;
    let Some(Body::Send(retry)) = &frame.body else {
        panic!("expected the retried Send")
    };
    assert_eq!(
        retry.client_msg_id, first_try.client_msg_id,
        "same id: the server can dedup"
    );
    let reply = SendReply {
        msg_id: "m-2".into(),
        seq: 9,
        epoch: 0,
    };
    conn_b
        .send_frame(Frame::new(frame.id, Body::SendReply(reply)))
        .await;
    assert_eq!(in_flight.await.unwrap().unwrap().msg_id, "m-2");

    // A draining comet asks us to go: reconnect elsewhere (back to comet-a).
    conn_b
        .send_frame(Frame::new(0, Body::Reconnect(Reconnect { after_ms: 20 })))
        .await;
    let Event::Disconnected { reason } = next_event(&mut events).await else {
        panic!("expected Disconnected")
    };
    assert!(reason.contains("draining"), "{reason}");
    let (mut conn_a, _) = a.accept_auth("key-a2", 30).await;
    assert_eq!(
        next_event(&mut events).await,
        Event::Connected {
            comet_id: "comet-a".into(),
            key: "key-a2".into()
        }
    );

    // A policy kick is final: no reconnect, events end, requests fail.
    let kick = Frame::new(
        0,
        Body::Kick(Kick {
            reason: "kick_old: logged in elsewhere".into(),
        }),
    );
    conn_a.send_frame(kick).await;
    assert_eq!(
        next_event(&mut events).await,
        Event::Kicked {
            reason: "kick_old: logged in elsewhere".into()
        }
    );
    assert_eq!(
        tokio::time::timeout(WAIT, events.recv()).await.unwrap(),
        None
    );
    assert!(matches!(
        client.send_to_room("lobby", 1, Bytes::from("x")).await,
        Err(ClientError::Kicked(_))
    ));
    let reconnected =
        tokio::time::timeout(Duration::from_secs(60), b.incoming.lock().await.recv()).await;
    assert!(reconnected.is_err(), "no reconnect after a kick");
}

#[tokio::test(start_paused = true)]
async fn unreachable_comet_is_skipped_at_connect() {
    let net = Net::default();
    // Nobody serves "dead" on this network: its connection is refused.
    let dead = CometAddr {
        id: "dead".into(),
        tcp: "dead.test:1".into(),
        ws: String::new(),
    };
    let a = net.comet("comet-a");
    let (connected, _conn) = tokio::join!(
        net.connect(vec![dead, a.addr()], &[]),
        a.accept_auth("k", 30)
    );
    let (client, mut events) = connected;
    assert_eq!(client.comet_id().as_deref(), Some("comet-a"));
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn refused_auth_fails_connect() {
    let net = Net::default();
    let a = net.comet("comet-a");
    let refuse = async {
        let mut conn = a.accept().await;
        let frame = conn.recv().await;
        conn.send_frame(Frame::error(
            frame.id,
            ErrorCode::Unauthenticated,
            "bad token",
        ))
        .await;
        conn
    };
    let (result, _conn) = tokio::join!(
        Client::connect_with(net.config(&[]), login_reply(vec![a.addr()])),
        refuse
    );
    match result {
        Err(ClientError::Server { code, .. }) => {
            assert_eq!(code, ErrorCode::Unauthenticated as i32)
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_are_sent_and_silence_means_dead() {
    let net = Net::default();
    let a = net.comet("comet-a");
    let (connected, accepted) =
        tokio::join!(net.connect(vec![a.addr()], &[]), a.accept_auth("k", 1));
    let (_client, mut events) = connected;
    let (mut conn, _) = accepted;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));

    let frame = conn.recv().await;
    assert!(matches!(frame.body, Some(Body::Heartbeat(_))), "{frame:?}");
    // Never answer: after 3 heartbeats of silence the client gives up on
    // us; on the virtual clock, exactly 3 s after the last frame it read
    // (the AuthReply, 1 s before this first heartbeat).
    let started = tokio::time::Instant::now();
    let Event::Disconnected { reason } = next_event(&mut events).await else {
        panic!("expected Disconnected")
    };
    assert!(reason.contains("no traffic"), "{reason}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // With only one comet it comes back to the same one.
    let (_conn, _) = a.accept_auth("k2", 30).await;
    assert!(matches!(next_event(&mut events).await, Event::Connected { key, .. } if key == "k2"));
}

#[tokio::test(start_paused = true)]
async fn garbage_from_the_comet_is_a_disconnect_not_a_panic() {
    let net = Net::default();
    let a = net.comet("comet-a");
    let (connected, accepted) =
        tokio::join!(net.connect(vec![a.addr()], &[]), a.accept_auth("k", 30));
    let (client, mut events) = connected;
    let (conn, _) = accepted;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    let mut conn = conn;
    conn.send_bytes(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    let Event::Disconnected { reason } = next_event(&mut events).await else {
        panic!("expected Disconnected")
    };
    assert!(reason.contains("bad frame"), "{reason}");
    // An oversize length prefix is refused as well.
    let (conn, _) = a.accept_auth("k2", 30).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    let mut conn = conn;
    conn.send_bytes(&[0x7f, 0xff, 0xff, 0xff]).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Disconnected { .. }
    ));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn close_fails_pending_requests_and_ends_events() {
    let net = Net::default();
    let a = net.comet("comet-a");
    let (connected, accepted) =
        tokio::join!(net.connect(vec![a.addr()], &[]), a.accept_auth("k", 30));
    let (client, mut events) = connected;
    let (mut conn, _) = accepted;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    let sender = client.clone();
    let pending = tokio::spawn(async move { sender.join("r").await });
    let _ = recv_request(&mut conn).await; // never answered
    client.close().await;
    assert!(matches!(pending.await.unwrap(), Err(ClientError::Closed)));
    assert_eq!(
        tokio::time::timeout(WAIT, events.recv()).await.unwrap(),
        None
    );
    assert!(matches!(client.join("r").await, Err(ClientError::Closed)));
    conn.expect_closed().await;
}

#[tokio::test(start_paused = true)]
async fn unanswered_request_times_out() {
    let net = Net::default();
    let a = net.comet("comet-a");
    let (connected, accepted) =
        tokio::join!(net.connect(vec![a.addr()], &[]), a.accept_auth("k", 30));
    let (client, _events) = connected;
    let (mut conn, _) = accepted;
    let sender = client.clone();
    let started = tokio::time::Instant::now();
    let pending =
        tokio::spawn(async move { sender.send_to_user("bob", 1, Bytes::from("x")).await });
    let _ = recv_request(&mut conn).await;
    assert!(matches!(pending.await.unwrap(), Err(ClientError::Timeout)));
    // On the virtual clock: exactly the configured request timeout.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn an_unasked_room_head_past_what_was_shown_syncs_the_room() {
    let (client, mut events, mut conn, _comet) = connected_in(&["lobby", "quiet"], 2).await;

    // The comet reported its connections to logic again and tells the heads
    // of the rooms this connection is in: lobby moved on, quiet did not, and
    // a room the client is not in is none of its business.
    let rooms = [
        ("lobby".to_owned(), head(1, 5, 1)),
        ("quiet".to_owned(), head(1, 2, 1)),
        ("elsewhere".to_owned(), head(1, 9, 1)),
    ];
    let unasked = HeartbeatReply {
        inbox: None,
        rooms: rooms.into_iter().collect(),
    };
    conn.send(0, Body::HeartbeatReply(unasked)).await;
    let (id, sync) = recv_sync(&mut conn).await;
    assert_eq!(sync.room, "lobby");
    assert_eq!((sync.after_seq, sync.epoch, sync.before_seq), (2, 1, 0));
    assert!(sync.limit > 0);

    // The page fills the gap: its messages become events, in order.
    conn.send(
        id,
        Body::SyncReply(page_of("lobby", [3, 4, 5], head(1, 5, 1))),
    )
    .await;
    for seq in [3, 4, 5] {
        match next_event(&mut events).await {
            Event::Message(m) => assert_eq!((m.seq, m.to), (seq, Some(Target::room("lobby")))),
            other => panic!("expected lobby's message {seq}, got {other:?}"),
        }
    }
    assert_eq!(client.room_position("lobby"), Some(Position::new(1, 5)));
    assert_eq!(client.room_position("quiet"), Some(Position::new(1, 2)));

    // Nothing else was asked for: the next frame is the next request.
    let joiner = client.clone();
    let join = tokio::spawn(async move { joiner.join("r2").await });
    let frame = recv_frame(&mut conn).await;
    assert!(
        matches!(&frame.body, Some(Body::Join(j)) if j.room == "r2"),
        "no sync for quiet or elsewhere: {frame:?}"
    );
    let reply = JoinReply {
        room: "r2".into(),
        head: Some(head(1, 0, 0)),
    };
    conn.send(frame.id, Body::JoinReply(reply)).await;
    join.await.unwrap().unwrap();

    // A live message right after the page continues the stream.
    let next = message("lobby-6", 6, Target::room("lobby"), "six");
    conn.send_frame(push(vec![next.clone()])).await;
    assert_eq!(next_event(&mut events).await, Event::Message(next));
}

#[tokio::test(start_paused = true)]
async fn history_pages_back_with_before_seq_to_the_oldest_held() {
    let (client, mut events, mut conn, _comet) = connected_in(&["lobby"], 60).await;

    // The newest page: below u64::MAX (the comet caps it at the head), in
    // whatever epoch is current.
    let reader = client.clone();
    let newest = tokio::spawn(async move { reader.history(Some("lobby"), 3).await });
    let (id, sync) = recv_sync(&mut conn).await;
    assert_eq!(sync.room, "lobby");
    assert_eq!(
        (sync.after_seq, sync.before_seq, sync.epoch),
        (0, u64::MAX, 0)
    );
    assert_eq!(sync.limit, 3);
    conn.send(
        id,
        Body::SyncReply(page_of("lobby", 58..=60, head(1, 60, 10))),
    )
    .await;
    let page = newest.await.unwrap().unwrap();
    assert_eq!(seqs(&page.messages), [58, 59, 60]);
    assert!(page.more && !page.gap && !page.reset);
    assert_eq!(page.older(), Some(Position::new(1, 58)));

    // On from there; the comet holds from seq 10 on, older ones expired.
    let reader = client.clone();
    let before = page.older().unwrap();
    let back = tokio::spawn(async move { reader.history_before(Some("lobby"), before, 50).await });
    let (id, sync) = recv_sync(&mut conn).await;
    assert_eq!((sync.after_seq, sync.before_seq, sync.epoch), (0, 58, 1));
    assert_eq!(sync.limit, 50);
    let mut reply = page_of("lobby", 10..58, head(1, 60, 10));
    reply.gap = true;
    conn.send(id, Body::SyncReply(reply)).await;
    let History {
        messages,
        more,
        gap,
        reset,
    } = back.await.unwrap().unwrap();
    assert_eq!(seqs(&messages), (10..58).collect::<Vec<_>>());
    assert!(!more && gap && !reset, "the oldest held, older ones gone");

    // The inbox from the start of its stream: no more, and no gap.
    let reader = client.clone();
    let inbox = tokio::spawn(async move { reader.history(None, 10).await });
    let (id, sync) = recv_sync(&mut conn).await;
    assert_eq!((sync.room.as_str(), sync.before_seq), ("", u64::MAX));
    conn.send(id, Body::SyncReply(page_of("", 1..=4, head(1, 4, 1))))
        .await;
    let page = inbox.await.unwrap().unwrap();
    assert_eq!(seqs(&page.messages), [1, 2, 3, 4]);
    assert!(!page.more && !page.gap && page.older().is_none());

    // A refused page fails the call; the connection stays.
    let reader = client.clone();
    let refused = tokio::spawn(async move {
        reader
            .history_before(Some("lobby"), Position::new(1, 5), 5)
            .await
    });
    let (id, _) = recv_sync(&mut conn).await;
    conn.send_frame(Frame::error(id, ErrorCode::BadRequest, "both directions"))
        .await;
    match refused.await.unwrap() {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::BadRequest as i32),
        other => panic!("expected BAD_REQUEST, got {other:?}"),
    }

    // A page whose head is past what was shown: the client syncs the tail,
    // and only that tail becomes events (history is never shown as events).
    let reader = client.clone();
    let last = tokio::spawn(async move { reader.history(Some("lobby"), 1).await });
    let (id, _) = recv_sync(&mut conn).await;
    conn.send(id, Body::SyncReply(page_of("lobby", [62], head(1, 62, 10))))
        .await;
    assert_eq!(seqs(&last.await.unwrap().unwrap().messages), [62]);
    let (id, sync) = recv_sync(&mut conn).await;
    assert_eq!(
        (sync.room.as_str(), sync.after_seq, sync.before_seq),
        ("lobby", 60, 0)
    );
    conn.send(
        id,
        Body::SyncReply(page_of("lobby", [61, 62], head(1, 62, 10))),
    )
    .await;
    for seq in [61, 62] {
        match next_event(&mut events).await {
            Event::Message(m) => assert_eq!(m.seq, seq),
            other => panic!("expected lobby's message {seq}, got {other:?}"),
        }
    }
}
