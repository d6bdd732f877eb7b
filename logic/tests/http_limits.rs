//! The HTTP listener's limits: a connection cap (in all and per client
//! address) answered 503, a slow request head cut off, a request that takes
//! too long answered 408.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use courier_testkit::wait::PATIENCE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one keep-alive GET of `/healthz` and reads its whole reply head.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    read_some(stream).await
}

/// Reads what the server sends next (until it pauses or closes).
async fn read_some(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("the server answered")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether the server closed `stream` (EOF or reset) within the patience.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn address(t: &common::TestLogic) -> String {
    t.http.trim_start_matches("http://").to_owned()
}

/// A connection to `addr` from the loopback address `from` (127.0.0.x).
async fn connect_from(from: &str, addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

#[tokio::test]
async fn one_client_cannot_hold_more_than_its_share_of_connections() {
    let mut cfg = common::config();
    cfg.max_connections_per_ip = 2;
    let t = common::start(cfg).await;
    let addr = address(&t);
    let mut first = connect_from("127.0.0.1", &addr).await;
    let mut second = connect_from("127.0.0.1", &addr).await;
    assert!(healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = connect_from("127.0.0.1", &addr).await;
    let reply = read_some(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("Retry-After: 1"), "{reply}");
    assert!(closed_by_server(&mut third).await);
    // Another client is not affected.
    let mut other = connect_from("127.0.0.2", &addr).await;
    assert!(healthz(&mut other).await.starts_with("HTTP/1.1 200"));
    assert!(healthz(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_cap_get_503_and_retry_after() {
    let mut cfg = common::config();
    cfg.max_connections = 2;
    let t = common::start(cfg).await;
    let addr = address(&t);
    let mut first = TcpStream::connect(&addr).await.unwrap();
    let mut second = TcpStream::connect(&addr).await.unwrap();
    assert!(healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz(&mut second).await.starts_with("HTTP/1.1 200"));

    let mut third = TcpStream::connect(&addr).await.unwrap();
    let reply = read_some(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("Retry-After: 1"), "{reply}");
    assert!(reply.contains("\"code\":\"busy\""), "{reply}");
    assert!(closed_by_server(&mut third).await);

    // A connection that ends gives its place back.
    drop(first);
    courier_testkit::wait::eventually_async("a place frees up", PATIENCE, || {
        let addr = addr.clone();
        async move {
            let mut next = TcpStream::connect(&addr).await.unwrap();
            healthz(&mut next).await.starts_with("HTTP/1.1 200")
        }
    })
    .await;
    // The connections still open were never disturbed.
    assert!(healthz(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_client_holding_half_a_request_head_loses_its_socket() {
    let mut cfg = common::config();
    cfg.header_read_timeout = Duration::from_millis(200);
    cfg.idle_timeout = Duration::from_millis(300);
    let t = common::start(cfg).await;
    let mut slow = TcpStream::connect(address(&t)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // Never the blank line that ends the head: the server must hang up.
    assert!(closed_by_server(&mut slow).await, "slow head kept open");

    // A client that idles before its first byte is cut off too.
    let mut silent = TcpStream::connect(address(&t)).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "silent client kept open"
    );

    // A prompt client is served, and closed once it idles after.
    let mut prompt = TcpStream::connect(address(&t)).await.unwrap();
    assert!(healthz(&mut prompt).await.starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut prompt).await,
        "idle keep-alive kept open"
    );
}

#[tokio::test]
async fn a_request_body_that_never_finishes_is_answered_408() {
    let mut cfg = common::config();
    cfg.request_timeout = Duration::from_millis(200);
    let t = common::start(cfg).await;
    let mut slow = TcpStream::connect(address(&t)).await.unwrap();
    let head = format!(
        "POST /api/v1/push/all HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"data\":",
        common::API_KEY
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let reply = read_some(&mut slow).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
}
