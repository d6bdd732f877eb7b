//! LogicState test harness: a real logic on 127.0.0.1:0 over fresh `memory://`
//! backends, and helpers to read what it published.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use courier_cluster::config::ClusterConfig;
use courier_cluster::{Backends, Consumer, ConsumerEvent, Delivery};
use courier_logic::{Logic, LogicConfig};
use courier_proto::queue::{envelope, Envelope};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

pub const API_KEY: &str = "test-api-key";
pub const SECRET: &str = "logic-test-jwt-secret-of-32-bytes";

/// A running logic; stopped when dropped.
pub struct TestLogic {
    pub http: String,
    pub grpc: String,
    pub backends: Backends,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), courier_logic::LogicError>>>,
}

impl Drop for TestLogic {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The secret comets' calls carry.
pub const CLUSTER_SECRET: &str = "logic-test-cluster-secret-32-bytes";

/// A gRPC client of logic that carries the cluster secret, as comets do.
pub async fn comet_client(
    grpc: &str,
) -> courier_proto::logic::logic_client::LogicClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        courier_runtime::cluster_auth::Stamp,
    >,
> {
    let channel = tonic::transport::Channel::from_shared(grpc.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let secret = courier_runtime::ClusterSecret::new(CLUSTER_SECRET).unwrap();
    courier_proto::logic::logic_client::LogicClient::with_interceptor(channel, secret.stamper())
}

pub fn config() -> LogicConfig {
    LogicConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: None,
        api_key: API_KEY.into(),
        jwt_secret: SECRET.into(),
        cluster_secret: CLUSTER_SECRET.into(),
        ..LogicConfig::default()
    }
}

pub async fn start(config: LogicConfig) -> TestLogic {
    let backends = Backends::connect(&ClusterConfig::default()).await.unwrap();
    start_with(config, backends).await
}

pub async fn start_with(config: LogicConfig, backends: Backends) -> TestLogic {
    let logic = Logic::bind(config, backends.clone()).await.unwrap();
    let http = format!("http://{}", logic.http_addr());
    let grpc = format!("http://{}", logic.grpc_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(logic.run(shutdown.clone()));
    TestLogic {
        http,
        grpc,
        backends,
        client: reqwest::Client::new(),
        shutdown,
        task: Some(task),
    }
}

impl TestLogic {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.http)
    }

    /// POST with the API key.
    pub async fn push(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the logic and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), courier_logic::LogicError> {
        self.shutdown.cancel();
        self.task.take().unwrap().await.unwrap()
    }
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
    (status, body)
}

/// Every message stored in `uid`'s inbox (up to 100), decoded, in order.
pub async fn inbox_of(t: &TestLogic, uid: &str) -> Vec<courier_proto::client::Message> {
    let page = t
        .backends
        .inbox
        .read(
            courier_cluster::inbox::Stream::User(uid),
            courier_cluster::inbox::Start::After(courier_proto::Position::default()),
            100,
            usize::MAX,
        )
        .await
        .unwrap();
    page.messages.iter().map(decoded).collect()
}

/// The next published message, decoded, with its queue key.
pub async fn next_envelope(consumer: &dyn Consumer) -> (Option<String>, envelope::Kind) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("no envelope within 5s")
            .unwrap();
        if let ConsumerEvent::Message(Delivery { key, payload, .. }) = event {
            let envelope = Envelope::decode(payload).unwrap();
            return (key, envelope.kind.expect("envelope without kind"));
        }
    }
}

/// The message an envelope carries, decoded (the queue carries its bytes).
pub fn decoded(message: &bytes::Bytes) -> courier_proto::client::Message {
    prost::Message::decode(message.clone()).expect("an encoded Message")
}

/// The `op` of the message an envelope carries (kicks have none).
pub fn op_of(kind: &envelope::Kind) -> Option<u32> {
    match kind {
        envelope::Kind::Keys(k) => Some(decoded(&k.message).op),
        envelope::Kind::Room(r) => Some(decoded(&r.message).op),
        envelope::Kind::Broadcast(b) => Some(decoded(&b.message).op),
        envelope::Kind::Kick(_) => None,
    }
}

/// Envelopes until (not including) the first whose message has `op`.
pub async fn envelopes_until_op(
    consumer: &dyn Consumer,
    op: u32,
) -> Vec<(Option<String>, envelope::Kind)> {
    let mut seen = Vec::new();
    loop {
        let next = next_envelope(consumer).await;
        if op_of(&next.1) == Some(op) {
            return seen;
        }
        seen.push(next);
    }
}

/// A session of `uid`'s connection `key` on `comet`, no device.
pub fn session(uid: &str, key: &str, comet: &str) -> courier_cluster::Session {
    courier_cluster::Session {
        uid: uid.into(),
        key: key.into(),
        comet_id: comet.into(),
        ..courier_cluster::Session::default()
    }
}
