//! The SDK's driver against fake comets that speak the frame protocol over
//! loopback TCP: auth, request/reply matching, pushes and dedup, heartbeats,
//! reconnect to another comet with retried requests, drain, kick, close.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use courier_client::{Client, ClientConfig, ClientError, CometAddr, Event, Events, LoginReply};
use courier_proto::client::{
    frame::Body, Auth, AuthReply, ErrorCode, Frame, HeartbeatReply, JoinReply, Kick, Message, Push,
    Reconnect, SendReply, Target,
};
use courier_proto::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(5);

type Conn = Framed<TcpStream, FrameCodec>;

struct FakeComet {
    id: String,
    listener: TcpListener,
}

impl FakeComet {
    async fn bind(id: &str) -> Self {
        Self {
            id: id.into(),
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> CometAddr {
        CometAddr {
            id: self.id.clone(),
            tcp: self.listener.local_addr().unwrap().to_string(),
            ws: String::new(),
        }
    }

    async fn accept(&self) -> Conn {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("client connects")
            .unwrap();
        Framed::new(stream, FrameCodec::new(1 << 20))
    }

    /// Accepts, reads `Auth`, answers `AuthReply` with `key`.
    async fn accept_auth(&self, key: &str, heartbeat_secs: u32) -> (Conn, Auth) {
        let mut conn = self.accept().await;
        let frame = recv(&mut conn).await;
        let Some(Body::Auth(auth)) = frame.body else {
            panic!("first frame must be Auth, got {frame:?}")
        };
        let reply = AuthReply {
            uid: "alice".into(),
            key: key.into(),
            heartbeat_secs,
            rooms: auth.rooms.clone(),
        };
        conn.send(Frame::new(frame.id, Body::AuthReply(reply)))
            .await
            .unwrap();
        (conn, auth)
    }
}

async fn recv(conn: &mut Conn) -> Frame {
    tokio::time::timeout(WAIT, conn.next())
        .await
        .expect("a frame in time")
        .expect("connection open")
        .expect("valid frame")
}

/// The next frame that is neither a heartbeat (answered) nor an ack.
async fn recv_request(conn: &mut Conn) -> Frame {
    loop {
        let frame = recv(conn).await;
        match frame.body {
            Some(Body::Heartbeat(_)) => {
                let reply = Frame::new(frame.id, Body::HeartbeatReply(HeartbeatReply {}));
                conn.send(reply).await.unwrap();
            }
            Some(Body::Ack(_)) => {}
            _ => return frame,
        }
    }
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

fn message(id: &str, seq: u64, to: Target, text: &str) -> Message {
    Message {
        msg_id: id.into(),
        seq,
        from: "bob".into(),
        to: Some(to),
        op: courier_proto::op::CHAT,
        data: Bytes::from(text.to_owned()),
        sent_at_ms: 1_700_000_000_000,
    }
}

fn push(messages: Vec<Message>) -> Frame {
    Frame::new(0, Body::Push(Push { messages }))
}

async fn connect(comets: Vec<CometAddr>, rooms: &[&str]) -> (Client, Events) {
    let cfg = config(rooms);
    Client::connect_with(cfg, login_reply(comets))
        .await
        .unwrap()
}

#[tokio::test]
async fn requests_pushes_reconnect_drain_and_kick() {
    let a = FakeComet::bind("comet-a").await;
    let b = FakeComet::bind("comet-b").await;
    let comets = vec![a.addr(), b.addr()];

    let (connect, accepted) = tokio::join!(connect(comets, &["lobby"]), a.accept_auth("key-a", 30));
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
    };
    conn_a
        .send(Frame::new(frame.id, Body::SendReply(reply)))
        .await
        .unwrap();
    assert_eq!(send.await.unwrap().unwrap().msg_id, "m-1");

    // Join updates rooms; an Error frame with the request's id fails it.
    let joiner = client.clone();
    let join = tokio::spawn(async move { joiner.join("r2").await });
    let frame = recv_request(&mut conn_a).await;
    assert!(matches!(&frame.body, Some(Body::Join(j)) if j.room == "r2"));
    let reply = JoinReply { room: "r2".into() };
    conn_a
        .send(Frame::new(frame.id, Body::JoinReply(reply)))
        .await
        .unwrap();
    join.await.unwrap().unwrap();
    assert_eq!(client.rooms(), vec!["lobby", "r2"]);

    let leaver = client.clone();
    let leave = tokio::spawn(async move { leaver.leave("nope").await });
    let frame = recv_request(&mut conn_a).await;
    let err = Frame::error(frame.id, ErrorCode::BadRequest, "not a member");
    conn_a.send(err).await.unwrap();
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
        .send(push(vec![x1.clone(), x1.clone(), x2.clone()]))
        .await
        .unwrap();
    conn_a
        .send(push(vec![
            x2.clone(),
            message("x3", 0, Target::room("lobby"), "three"),
        ]))
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, Event::Message(x1));
    assert_eq!(next_event(&mut events).await, Event::Message(x2));
    let Event::Message(m) = next_event(&mut events).await else {
        panic!("expected a message")
    };
    assert_eq!(m.msg_id, "x3", "the replayed x2 was dropped");
    let ack = loop {
        if let Some(Body::Ack(ack)) = recv(&mut conn_a).await.body {
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
    };
    conn_b
        .send(Frame::new(frame.id, Body::SendReply(reply)))
        .await
        .unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap().msg_id, "m-2");

    // A draining comet asks us to go: reconnect elsewhere (back to comet-a).
    conn_b
        .send(Frame::new(0, Body::Reconnect(Reconnect { after_ms: 20 })))
        .await
        .unwrap();
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
    conn_a.send(kick).await.unwrap();
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
    let reconnected = tokio::time::timeout(Duration::from_millis(300), b.listener.accept()).await;
    assert!(reconnected.is_err(), "no reconnect after a kick");
}

#[tokio::test]
async fn unreachable_comet_is_skipped_at_connect() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        CometAddr {
            id: "dead".into(),
            tcp: addr,
            ws: String::new(),
        }
    };
    let a = FakeComet::bind("comet-a").await;
    let (connected, _conn) =
        tokio::join!(connect(vec![dead, a.addr()], &[]), a.accept_auth("k", 30));
    let (client, mut events) = connected;
    assert_eq!(client.comet_id().as_deref(), Some("comet-a"));
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
}

#[tokio::test]
async fn refused_auth_fails_connect() {
    let a = FakeComet::bind("comet-a").await;
    let refuse = async {
        let mut conn = a.accept().await;
        let frame = recv(&mut conn).await;
        conn.send(Frame::error(
            frame.id,
            ErrorCode::Unauthenticated,
            "bad token",
        ))
        .await
        .unwrap();
        conn
    };
    let (result, _conn) = tokio::join!(
        Client::connect_with(config(&[]), login_reply(vec![a.addr()])),
        refuse
    );
    match result {
        Err(ClientError::Server { code, .. }) => {
            assert_eq!(code, ErrorCode::Unauthenticated as i32)
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn heartbeats_are_sent_and_silence_means_dead() {
    let a = FakeComet::bind("comet-a").await;
    let (connected, accepted) = tokio::join!(connect(vec![a.addr()], &[]), a.accept_auth("k", 1));
    let (_client, mut events) = connected;
    let (mut conn, _) = accepted;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));

    let frame = recv(&mut conn).await;
    assert!(matches!(frame.body, Some(Body::Heartbeat(_))), "{frame:?}");
    // Never answer: after 3 heartbeats of silence the client gives up on us.
    let started = tokio::time::Instant::now();
    let Event::Disconnected { reason } = next_event(&mut events).await else {
        panic!("expected Disconnected")
    };
    assert!(reason.contains("no traffic"), "{reason}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before ~3 heartbeats"
    );
    // With only one comet it comes back to the same one.
    let (_conn, _) = a.accept_auth("k2", 30).await;
    assert!(matches!(next_event(&mut events).await, Event::Connected { key, .. } if key == "k2"));
}

#[tokio::test]
async fn garbage_from_the_comet_is_a_disconnect_not_a_panic() {
    use tokio::io::AsyncWriteExt;
    let a = FakeComet::bind("comet-a").await;
    let (connected, accepted) = tokio::join!(connect(vec![a.addr()], &[]), a.accept_auth("k", 30));
    let (client, mut events) = connected;
    let (conn, _) = accepted;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    let mut stream = conn.into_inner();
    stream
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
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
    let mut stream = conn.into_inner();
    stream.write_all(&[0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        Event::Disconnected { .. }
    ));
    client.close().await;
}

#[tokio::test]
async fn close_fails_pending_requests_and_ends_events() {
    let a = FakeComet::bind("comet-a").await;
    let (connected, accepted) = tokio::join!(connect(vec![a.addr()], &[]), a.accept_auth("k", 30));
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
    assert!(conn.next().await.is_none(), "socket closed");
}

#[tokio::test]
async fn unanswered_request_times_out() {
    let a = FakeComet::bind("comet-a").await;
    let (connected, accepted) = tokio::join!(connect(vec![a.addr()], &[]), a.accept_auth("k", 30));
    let (client, _events) = connected;
    let (mut conn, _) = accepted;
    let sender = client.clone();
    let started = tokio::time::Instant::now();
    let pending =
        tokio::spawn(async move { sender.send_to_user("bob", 1, Bytes::from("x")).await });
    let _ = recv_request(&mut conn).await;
    assert!(matches!(pending.await.unwrap(), Err(ClientError::Timeout)));
    assert!(started.elapsed() >= Duration::from_secs(3));
}
