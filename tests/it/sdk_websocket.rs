//! The SDK over WebSocket end to end: a client whose connector is the
//! WebSocket transport reaches the comet at the `ws` URL logic gives it
//! (through a proxy here, so the test sees the connections and can cut
//! them), receives a push to its user and a room message, and after its
//! connection is cut reconnects over WebSocket and resumes what it missed;
//! over TLS (`wss://`) it trusts the CA given with `with_tls`.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_client::{
    register_with, BoxStream, Client, ClientConfig, CometAddr, Connector, Event, Events, Transport,
    WebSocket,
};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy in front of the comet's WebSocket listener that can cut
/// every connection through it and refuse new ones while down.
#[derive(Clone)]
struct Proxy {
    url: String,
    down: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            url: format!("ws://{}/ws", listener.local_addr().unwrap()),
            down: Arc::default(),
            accepted: Arc::default(),
            links: Arc::default(),
        };
        let this = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if this.down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                this.accepted.fetch_add(1, Ordering::SeqCst);
                let link = tokio::spawn(async move {
                    let mut comet = TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut comet).await;
                });
                this.links.lock().push(link.abort_handle());
            }
        });
        proxy
    }

    /// Cuts every connection and refuses new ones until [`up`](Self::up).
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// The WebSocket transport, pointed at the proxy instead of the comet's
/// own `ws` URL (which it checks is there).
struct ViaProxy {
    ws: WebSocket,
    proxy: Proxy,
}

impl Transport for ViaProxy {
    fn connect<'a>(&'a self, comet: &'a CometAddr) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(async move {
            assert!(
                comet.ws.starts_with("ws://"),
                "logic gives a ws URL: {comet:?}"
            );
            let proxied = CometAddr {
                ws: self.proxy.url.clone(),
                ..comet.clone()
            };
            self.ws.connect(&proxied).await
        })
    }
}

/// `name`, registered, connected over WebSocket through `proxy` in `rooms`.
async fn ws_user(
    system: &courier::System,
    proxy: &Proxy,
    name: &str,
    rooms: &[&str],
) -> (Client, Events) {
    let mut config =
        ClientConfig::new(system.logic_url(), name, PASSWORD).with_rooms(rooms.iter().copied());
    config.reconnect_max = Duration::from_millis(300);
    let transport = ViaProxy {
        ws: WebSocket::new().with_max_frame(config.max_frame),
        proxy: proxy.clone(),
    };
    let config = config.with_connector(Connector::new(transport));
    register_with(&config).await.unwrap();
    Client::connect(config).await.unwrap()
}

async fn push(api: &Api, uid: &str, data: &str) {
    let (status, reply) = api
        .post("/push/users", json!({"uids": [uid], "op": 1, "data": data}))
        .await;
    assert_eq!(status, 202, "{reply}");
}

/// Waits until the client lost its connection and has connected again.
async fn reconnected(events: &mut Events) {
    let wait = async {
        let mut lost = false;
        loop {
            match events.recv().await {
                Some(Event::Disconnected { .. }) => lost = true,
                Some(Event::Connected { .. }) if lost => return,
                Some(Event::Message(m)) => panic!("a message while away: {m:?}"),
                Some(_) => continue,
                None => panic!("client closed"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("reconnected");
}

#[tokio::test]
async fn a_websocket_client_gets_pushes_and_room_messages_and_resumes_after_a_cut() {
    let system = start(1).await;
    let api = Api::new(&system);
    let proxy = Proxy::start(system.comets[0].ws.expect("the comet serves WebSocket")).await;
    let (alice, mut alice_events) = ws_user(&system, &proxy, "alice", &["lobby"]).await;
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        alice.comet_id().as_deref(),
        Some(system.comets[0].id.as_str())
    );

    // A push to the user, and a room message from a TCP client.
    push(&api, "alice", "m1").await;
    next_message_is(&mut alice_events, br#""m1""#).await;
    let (bob, _bob_events) = device_in(&system, "bob", &["lobby"]).await;
    bob.send_to_room("lobby", 1, Bytes::from_static(b"hi lobby"))
        .await
        .unwrap();
    let m = next_message_is(&mut alice_events, b"hi lobby").await;
    assert_eq!(m.from, "bob");
    // And alice's own sends go up the WebSocket.
    alice
        .send_to_room("lobby", 1, Bytes::from_static(b"hi bob"))
        .await
        .unwrap();
    next_message_is(&mut alice_events, b"hi bob").await;

    // Cut the connection; what is pushed while it is down is delivered,
    // in order and once, when the client is back over WebSocket.
    proxy.cut();
    for i in 2..=4 {
        push(&api, "alice", &format!("m{i}")).await;
    }
    bob.send_to_room("lobby", 1, Bytes::from_static(b"while away"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.up();
    reconnected(&mut alice_events).await;
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 2);
    let mut inbox = Vec::new();
    let mut lobby = Vec::new();
    while inbox.len() < 3 || lobby.is_empty() {
        let m = next_message(&mut alice_events).await;
        // Pushes to the user are JSON strings; room messages are not.
        if text(&m).starts_with('"') {
            inbox.push(text(&m));
        } else {
            lobby.push(text(&m));
        }
    }
    assert_eq!(inbox, [r#""m2""#, r#""m3""#, r#""m4""#]);
    assert_eq!(lobby, ["while away"]);
    assert_eq!(alice.position().seq, 4);

    push(&api, "alice", "m5").await;
    next_message_is(&mut alice_events, br#""m5""#).await;
    alice.close().await;
    bob.close().await;
    system.stop().await;
}

#[tokio::test]
async fn a_comet_without_a_websocket_url_is_not_reached() {
    let mut config = support::config();
    config.comet.ws_addr = None;
    let system = start_with(config, 1).await;
    let mut config = ClientConfig::new(system.logic_url(), "carol", PASSWORD)
        .with_websocket()
        .unwrap();
    register_with(&config).await.unwrap();
    config.request_timeout = Duration::from_secs(2);
    assert!(Client::connect(config).await.is_err());
    system.stop().await;
}

#[tokio::test]
async fn over_wss_the_client_trusts_the_ca_given_with_tls() {
    let certs = courier_testkit::tls::TestCerts::new().unwrap();
    let mut config = support::config();
    config.tls = courier_runtime::TlsConfig {
        cert: certs.cert.clone(),
        key: certs.key.clone(),
        ca: certs.ca.clone(),
    };
    let system = start_with(config, 1).await;
    let config = ClientConfig::new(system.logic_url(), "dave", PASSWORD)
        .with_tls(Some(&certs.ca))
        .unwrap()
        .with_websocket()
        .unwrap();
    register_with(&config).await.unwrap();
    let (dave, mut events) = Client::connect(config).await.unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let pushed = https
        .post(format!("{}/api/v1/push/users", system.logic_url()))
        .bearer_auth(system.api_key())
        .json(&json!({"uids": ["dave"], "data": "over wss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);
    assert_eq!(text(&next_message(&mut events).await), "\"over wss\"");

    // Without the CA the comet's certificate is not trusted.
    let stranger = ClientConfig::new(system.logic_url(), "dave", PASSWORD)
        .with_tls(Some(&certs.ca))
        .unwrap();
    let mut stranger = stranger.with_connector(Connector::websocket());
    stranger.request_timeout = Duration::from_secs(2);
    assert!(Client::connect(stranger).await.is_err());
    dave.close().await;
    system.stop().await;
}

/// Registers `name` if needed and connects a TCP device in `rooms`.
async fn device_in(system: &courier::System, name: &str, rooms: &[&str]) -> (Client, Events) {
    let _ = courier_client::register(&system.logic_url(), name, PASSWORD).await;
    device(system, name, rooms).await
}
