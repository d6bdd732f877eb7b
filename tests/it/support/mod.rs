//! Shared helpers of the end-to-end tests: an embedded system on port 0,
//! an HTTP client for logic's API, and awaiting SDK events with a deadline.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use courier::{CourierConfig, System};
use courier_client::{Client, ClientConfig, Event, Events};
use courier_proto::client::Message;
use serde_json::Value;

/// How long any single awaited event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub mod cluster;
pub mod fleet;
pub mod hook_app;

pub const PASSWORD: &str = "correct horse";

/// A config with every listener on 127.0.0.1:0 and fast reports.
pub fn config() -> CourierConfig {
    let mut c = CourierConfig::default();
    let any = "127.0.0.1:0".parse().unwrap();
    c.comet.tcp_addr = any;
    c.comet.ws_addr = Some(any);
    c.comet.grpc_addr = any;
    c.comet.admin_addr = Some(any);
    c.job.admin_addr = Some(any);
    c.logic.http_addr = any;
    c.logic.grpc_addr = any;
    c.logic.admin_addr = Some(any);
    c.comet.report_interval = Duration::from_millis(100);
    c.logic.auth_rate_per_minute = 10_000;
    c
}

/// An embedded system on memory backends with `comets` comets.
pub async fn start(comets: usize) -> System {
    start_with(config(), comets).await
}

pub async fn start_with(config: CourierConfig, comets: usize) -> System {
    System::start(config, comets).await.expect("system starts")
}

/// Logic's HTTP API.
pub struct Api {
    pub base: String,
    pub api_key: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(system: &System) -> Self {
        Self {
            base: format!("{}/api/v1", system.logic_url()),
            api_key: system.api_key().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// POST with the API key; returns status and JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .json(&body);
        send(req).await
    }

    /// PUT with the API key.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let req = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .json(&body);
        send(req).await
    }

    /// DELETE with the API key.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let req = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key);
        send(req).await
    }

    /// POST with the API key and an `Idempotency-Key`.
    pub async fn post_idempotent(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .header("idempotency-key", key)
            .json(&body);
        send(req).await
    }

    /// POST without credentials.
    pub async fn post_public(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    /// POST a raw body with an arbitrary Authorization header value.
    pub async fn post_raw(&self, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        send(req).await
    }

    /// GET with the API key.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.api_key),
        )
        .await
    }

    /// Polls GET `path` until `pred` holds on the body, or fails at the deadline.
    pub async fn wait_for(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let what = format!("GET {path} to satisfy the test");
        courier_testkit::until_some(&what, DEADLINE, || async {
            let (status, body) = self.get(path).await;
            (status == 200 && pred(&body)).then_some(body)
        })
        .await
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("HTTP body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A client of a comet's push service at `grpc` (host:port) that carries
/// the cluster `secret`, as jobs do.
pub async fn comet_client(
    grpc: &str,
    secret: &str,
) -> courier_proto::comet::comet_client::CometClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        courier_runtime::cluster_auth::Stamp,
    >,
> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .expect("a URI")
        .connect()
        .await
        .expect("comet gRPC");
    let secret = courier_runtime::ClusterSecret::new(secret).expect("a valid secret");
    courier_proto::comet::comet_client::CometClient::with_interceptor(channel, secret.stamper())
}

/// Registers `name` (if needed) and logs in: its login token.
pub async fn token(system: &System, name: &str) -> String {
    let api = Api::new(system);
    api.post_public(
        "/users",
        serde_json::json!({"username": name, "password": PASSWORD}),
    )
    .await;
    let (status, body) = api
        .post_public(
            "/login",
            serde_json::json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("a token").to_owned()
}

/// Registers `user` and connects it with the SDK.
pub async fn user(system: &System, name: &str) -> (Client, Events) {
    let _ = courier_client::register(&system.logic_url(), name, PASSWORD).await;
    device(system, name, &[]).await
}

/// Connects one more device of an already registered user.
pub async fn device(system: &System, name: &str, rooms: &[&str]) -> (Client, Events) {
    let mut config = ClientConfig::new(system.logic_url(), name, PASSWORD);
    config.rooms = rooms.iter().map(|r| r.to_string()).collect();
    Client::connect(config).await.expect("client connects")
}

/// The next message event, skipping status events.
pub async fn next_message(events: &mut Events) -> Message {
    next_message_within(events, DEADLINE).await
}

/// The next message event within `wait`, skipping status events.
pub async fn next_message_within(events: &mut Events, wait: Duration) -> Message {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Message(m))) => return m,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("client closed before a message arrived"),
            Err(_) => panic!("no message within {wait:?}"),
        }
    }
}

/// Asserts no message arrives while `probe` (a message sent after the one
/// that must not arrive, to the same connection) is delivered first.
pub async fn next_message_is(events: &mut Events, expected_data: &[u8]) -> Message {
    let m = next_message(events).await;
    assert_eq!(
        String::from_utf8_lossy(&m.data),
        String::from_utf8_lossy(expected_data),
        "unexpected message {m:?}"
    );
    m
}

pub fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.data).into_owned()
}
