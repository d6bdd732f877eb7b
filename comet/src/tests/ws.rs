//! Clients over WebSocket: the same handshake, pushes and errors as TCP,
//! in either subprotocol, and what a page sees on the wire in JSON.

use courier_proto::client::{frame::Body, ErrorCode, Heartbeat};
use courier_proto::comet::PushRoomRequest;
use courier_ws::tokio_tungstenite::tungstenite::{Error as WsError, Message};
use courier_ws::Encoding;
use futures::{SinkExt, StreamExt};

use super::support::*;

#[tokio::test]
async fn a_websocket_client_in_either_subprotocol_gets_room_pushes() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut push = comet.push_client().await;
    let mut clients = Vec::new();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let mut c = comet.ws_client(encoding).await;
        let reply = c.auth(&h.token("alice"), &["lobby"]).await;
        assert!(reply.key.starts_with(&comet.id), "{reply:?}");
        clients.push(c);
    }
    push.push_room(PushRoomRequest {
        room: "lobby".into(),
        messages: vec![encoded_with("r1", b"hello")],
    })
    .await
    .unwrap();
    for c in &mut clients {
        assert_eq!(push_ids(&c.recv().await), ["r1"]);
        c.send(7, Body::Heartbeat(Heartbeat {})).await;
        let reply = c.recv().await;
        assert_eq!(reply.id, 7);
        assert!(matches!(reply.body, Some(Body::HeartbeatReply(_))));
    }
}

#[tokio::test]
async fn json_on_the_wire_is_proto3_canonical_json() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    let mut ws = comet.websocket(Some("courier.json")).await.unwrap();
    let auth =
        serde_json::json!({"id": "1", "auth": {"token": h.token("bob"), "rooms": ["lobby"]}});
    ws.send(Message::text(auth.to_string())).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["id"], "1", "{reply}");
    assert!(reply["authReply"]["key"].is_string(), "{reply}");
    // The resume page that follows every AuthReply.
    let page = next_json(&mut ws).await;
    assert!(page["syncReply"].is_object(), "{page}");

    let mut push = comet.push_client().await;
    push.push_room(PushRoomRequest {
        room: "lobby".into(),
        messages: vec![encoded_with("r1", b"hi")],
    })
    .await
    .unwrap();
    let pushed = next_json(&mut ws).await;
    let message = &pushed["push"]["messages"][0];
    assert_eq!(message["msgId"], "r1", "{pushed}");
    assert_eq!(message["data"], "aGk=", "bytes are base64: {pushed}");
}

#[tokio::test]
async fn a_message_that_is_not_a_frame_is_a_bad_frame() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    // Text on the protobuf subprotocol.
    let mut ws = comet.websocket(Some("courier.protobuf")).await.unwrap();
    ws.send(Message::text("{}")).await.unwrap();
    let mut c = FrameClient::new(courier_ws::FrameSocket::new(
        ws,
        Encoding::Protobuf,
        courier_proto::DEFAULT_MAX_FRAME,
    ));
    c.expect_error(ErrorCode::BadFrame).await;
    c.expect_closed().await;
    // JSON that is not a frame.
    let mut ws = comet.websocket(Some("courier.json")).await.unwrap();
    ws.send(Message::text(r#"{"auth":{"token":5}}"#))
        .await
        .unwrap();
    let error = next_json(&mut ws).await;
    // Enums by their names in client.proto.
    assert_eq!(error["error"]["code"], "ERROR_CODE_BAD_FRAME", "{error}");
}

#[tokio::test]
async fn upgrades_are_refused_for_other_subprotocols_and_paths() {
    let h = Harness::start().await;
    let comet = h.comet(h.config()).await;
    match comet.websocket(Some("mqtt")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 400),
        other => panic!("expected a 400, got {other:?}"),
    }
    // No subprotocol named: binary frames.
    let ws = comet.websocket(None).await.unwrap();
    let mut c = FrameClient::new(courier_ws::FrameSocket::new(
        ws,
        Encoding::Protobuf,
        courier_proto::DEFAULT_MAX_FRAME,
    ));
    c.auth(&h.token("carol"), &[]).await;
    let addr = comet.ws.unwrap();
    assert_eq!(status_of(addr, &upgrade(addr, "/other", None)).await, 404);
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            ws_origins: vec!["https://chat.example.com".into()],
            ..h.config()
        })
        .await;
    let addr = comet.ws.unwrap();
    let from = |origin| upgrade(addr, "/ws", Some(origin));
    assert_eq!(status_of(addr, &from("https://evil.example")).await, 403);
    assert_eq!(
        status_of(addr, &from("https://chat.example.com")).await,
        101
    );
}

/// A WebSocket upgrade request for `path`, from `origin`.
fn upgrade(addr: std::net::SocketAddr, path: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or_else(String::new, |o| format!("Origin: {o}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// The status code of the answer to a raw HTTP request.
async fn status_of(addr: std::net::SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 12];
    stream.read_exact(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head);
    head[9..12].parse().unwrap()
}

/// The next text message, as JSON.
async fn next_json(ws: &mut WebSocket) -> serde_json::Value {
    let message = tokio::time::timeout(courier_testkit::PATIENCE, ws.next())
        .await
        .expect("a message in time")
        .expect("the socket is open")
        .expect("a message");
    let Message::Text(text) = message else {
        panic!("expected text, got {message:?}")
    };
    serde_json::from_str(text.as_str()).unwrap()
}

#[tokio::test]
async fn before_auth_a_websocket_reads_no_more_than_an_auth_frame() {
    use prost::Message as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    // Waiting for the rest of the message would outlast the test.
    let comet = h
        .comet(crate::CometConfig {
            handshake_timeout: std::time::Duration::from_secs(3600),
            ..h.config()
        })
        .await;
    let addr = comet.ws.unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(upgrade(addr, "/ws", None).as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        response.push(stream.read_u8().await.unwrap());
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{response:?}");
    // One binary message that says it is 32 KiB (under `max_frame`, over
    // `max_auth_frame`), masked with a zero key, and 12 KiB of it: the
    // comet must give up on it now, not wait for the rest of a message it
    // would have to hold whole.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(32u64 * 1024).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    stream.write_all(&header).await.unwrap();
    // The comet may close (and reset) before all of it is written.
    let _ = stream.write_all(&[0x0a; 12 * 1024]).await;
    // What comes back: an error frame in a binary message, or the socket
    // closed or reset (bytes left unread make the close a reset, which may
    // overtake the error frame). Never silence until the timeout.
    let answer = tokio::time::timeout(courier_testkit::PATIENCE, async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        let mut body = vec![0; usize::from(head[1] & 0x7f)];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((head[0], body))
    })
    .await
    .expect("the comet answers before the message is complete");
    if let Ok((kind, body)) = answer {
        assert_eq!(kind, 0x82, "a binary message");
        let frame = courier_proto::client::Frame::decode(&body[..]).unwrap();
        let Some(Body::Error(error)) = frame.body else {
            panic!("expected an error, got {frame:?}")
        };
        assert_eq!(error.code, ErrorCode::BadFrame as i32, "{error:?}");
    }
}

#[tokio::test]
async fn clients_are_given_the_public_addresses_and_its_path_upgrades() {
    use courier_cluster::discovery::decode_view;
    use courier_cluster::{CometNode, Discovery, ServiceKind};
    let h = Harness::start().await;
    let comet = h
        .comet(crate::CometConfig {
            public_tcp: Some("comet-3.chat.example.com:443".into()),
            public_ws_url: Some("wss://chat.example.com/ws/comet-3".into()),
            ..h.config()
        })
        .await;
    let view = h.discovery.watch(ServiceKind::Comet).await.unwrap();
    let record = || decode_view::<CometNode>(&view.borrow()).into_iter().next();
    eventually("comet registered", || record().is_some()).await;
    let node = record().unwrap();
    assert_eq!(node.tcp, "comet-3.chat.example.com:443");
    assert_eq!(node.ws, "wss://chat.example.com/ws/comet-3");
    // Jobs still reach it where it listens.
    assert_eq!(node.grpc, comet.grpc.to_string());
    let addr = comet.ws.unwrap();
    // An ingress that passes the path on as it is, and one that rewrites it.
    assert_eq!(
        status_of(addr, &upgrade(addr, "/ws/comet-3", None)).await,
        101
    );
    assert_eq!(status_of(addr, &upgrade(addr, "/ws", None)).await, 101);
    assert_eq!(
        status_of(addr, &upgrade(addr, "/ws/comet-4", None)).await,
        404
    );
}

#[test]
fn public_addresses_that_clients_cannot_dial_are_refused() {
    let config = |tcp: Option<&str>, ws: Option<&str>| crate::CometConfig {
        jwt_secret: "j".repeat(32),
        cluster_secret: "c".repeat(32),
        public_tcp: tcp.map(str::to_owned),
        public_ws_url: ws.map(str::to_owned),
        ..crate::CometConfig::default()
    };
    assert!(config(Some("a.example:1"), Some("ws://a.example/x"))
        .validate()
        .is_ok());
    for tcp in [
        "a.example",
        "a.example:0",
        ":80",
        "a b:80",
        "a.example:99999",
    ] {
        let e = config(Some(tcp), None).validate().unwrap_err();
        assert!(e.starts_with("public_tcp"), "{tcp}: {e}");
    }
    let long = format!("wss://{}/ws", "a".repeat(300));
    for ws in [
        "https://a.example/ws",
        "wss:///ws",
        "a.example/ws",
        "wss://a\n.example",
        &long,
    ] {
        let e = config(None, Some(ws)).validate().unwrap_err();
        assert!(e.starts_with("public_ws_url"), "{ws}: {e}");
    }
}
