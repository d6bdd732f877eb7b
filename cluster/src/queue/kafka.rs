//! The Kafka queue (`kafka://host:port[,host:port]/topic`), via `rdkafka`.
//!
//! Publishing uses one idempotent [`FutureProducer`] with `acks=all` and
//! waits for the delivery report, so when `publish` returns (and logic
//! answers 202) every in-sync replica has the message; a lost broker
//! acknowledgement can then only cause a retry, never a duplicate in the
//! log. Each `subscribe` creates its own group member (see [`consumer`]),
//! because a Kafka consumer *is* one member of one group.
//!
//! The topic is created with the configured partition count if it is
//! missing, so `courier up --queue kafka://…` needs no separate setup step.
//!
//! A broker can die, come back empty, or forget the producer's state; the
//! queue rides through it by itself ([`health`]): a probe every 500 ms
//! re-creates a topic that vanished, rebuilds a producer the broker forgot
//! (or that librdkafka declared fatally failed), makes `publish` fail at
//! once while the brokers do not answer, and counts a *loss* when the log
//! went back (a partition's high watermark fell, or the topic was gone),
//! so logic can have every client sync what the lost log held.
//! Defaults are tuned for low push latency (`linger.ms=1`, short fetch
//! waits) and quick rebalances; any librdkafka property given in the
//! `[cluster.kafka]` table overrides them, for producer and consumer alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    FutureProducer, FutureRecord, Producer as _, PurgeConfig, ThreadedProducer,
};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Consumer, Queue, QueueHealth};
use crate::{Error, Result};

pub mod consumer;
mod health;
mod logs;

pub use consumer::KafkaConsumer;

use logs::{BrokerLogs, RecordingLogs};

/// Courier's producer: librdkafka's logs go through [`logs`].
type Producer = FutureProducer<BrokerLogs>;

const BACKEND: &str = "kafka";

/// How long a message may wait in the producer (queueing, retries) before
/// its publish fails. librdkafka's own default is five minutes, far longer
/// than any HTTP client waits for a 202.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long topic creation may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Least time between two rebuilds of the producer.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// A Kafka topic used as Courier's queue.
pub struct KafkaQueue {
    producing: Arc<Producing>,
    /// Defaults plus user settings; each subscriber adds its `group.id`.
    consumer_config: ClientConfig,
    health: watch::Receiver<QueueHealth>,
    /// Stops the probe when the queue goes.
    _probe: DropGuard,
}

impl std::fmt::Debug for KafkaQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaQueue")
            .field("topic", &self.producing.topic)
            .finish_non_exhaustive()
    }
}

/// The topic and the producer that writes to it, rebuilt when the broker
/// forgets it.
struct Producing {
    topic: String,
    partitions: u32,
    config: ClientConfig,
    producer: RwLock<Arc<Producer>>,
    rebuilt: Mutex<Instant>,
}

impl Producing {
    fn producer(&self) -> Arc<Producer> {
        self.producer.read().clone()
    }

    /// Replaces the producer with a new one (a new producer id and fresh
    /// sequence numbers), at most once per [`REBUILD_EVERY`] unless
    /// `always`.
    fn rebuild(&self, why: &str, always: bool) {
        {
            let mut rebuilt = self.rebuilt.lock();
            if !always && rebuilt.elapsed() < REBUILD_EVERY {
                return;
            }
            *rebuilt = Instant::now();
        }
        match self.config.create_with_context::<_, Producer>(BrokerLogs) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *self.producer.write(), Arc::new(fresh));
                // What the old producer still holds would wait out
                // DELIVERY_TIMEOUT: fail it now, so its senders are told
                // (their messages are stored; logic resyncs for them).
                old.purge(PurgeConfig::default().queue().inflight().non_blocking());
                metrics::counter!("courier_queue_producer_rebuilds_total").increment(1);
                tracing::warn!(topic = %self.topic, why, "kafka producer rebuilt");
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "cannot rebuild the kafka producer")
            }
        }
    }

    /// Creates the topic if it is missing.
    async fn ensure_topic(&self) -> Result<()> {
        create_topic(&self.config, &self.topic, self.partitions).await
    }
}

/// The brokers and topic named by a `kafka://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    /// Comma-separated `host:port` list for `bootstrap.servers`.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
}

impl KafkaUrl {
    /// Parses `kafka://host:port[,host:port]/topic`.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| Error::bad_url(url, "expected kafka://host:port/topic"))?;
        let (bootstrap, topic) = rest
            .split_once('/')
            .ok_or_else(|| Error::bad_url(url, "missing /topic"))?;
        if bootstrap.is_empty() || bootstrap.split(',').any(|h| !h.contains(':')) {
            return Err(Error::bad_url(url, "expected host:port[,host:port]"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(valid) {
            return Err(Error::bad_url(
                url,
                "topic must be 1-249 characters of [a-zA-Z0-9._-]",
            ));
        }
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

impl KafkaQueue {
    /// Connects to the brokers of `url`, creating its topic with
    /// `partitions` partitions if missing. `settings` are librdkafka
    /// properties that override Courier's defaults.
    pub async fn connect(
        url: &str,
        partitions: u32,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let KafkaUrl { bootstrap, topic } = KafkaUrl::parse(url)?;
        let producer_config = with_settings(producer_defaults(&bootstrap), settings);
        let consumer_config = with_settings(consumer_defaults(&bootstrap), settings);
        create_topic(&producer_config, &topic, partitions).await?;
        let producer: Producer = producer_config
            .create_with_context(BrokerLogs)
            .map_err(|e| Error::unavailable(BACKEND, e))?;
        tracing::info!(%topic, brokers = %bootstrap, "kafka queue connected");
        let producing = Arc::new(Producing {
            topic,
            partitions,
            config: producer_config,
            producer: RwLock::new(Arc::new(producer)),
            rebuilt: Mutex::new(Instant::now()),
        });
        let (health_tx, health) = watch::channel(QueueHealth::default());
        let stop = CancellationToken::new();
        tokio::spawn(health::probe(producing.clone(), health_tx, stop.clone()));
        Ok(Self {
            producing,
            consumer_config,
            health,
            _probe: stop.drop_guard(),
        })
    }

    /// The topic this queue publishes to.
    pub fn topic(&self) -> &str {
        &self.producing.topic
    }
}

/// Whether `error` says the broker no longer knows this producer (it came
/// back empty, or expired the producer's state), or librdkafka gave up on
/// it: a new producer is needed.
fn producer_forgotten(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::Fatal
        )
    )
}

fn producer_defaults(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "courier")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        // librdkafka leaves Nagle on: small produce requests would wait on
        // the broker's delayed ACKs.
        .set("socket.nagle.disable", "true")
        // A topic re-created after a broker came back is found within
        // seconds, not at librdkafka's 5-minute refresh.
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        );
    c
}

/// Consumer defaults. `fetch.wait.max.ms` is low because a push system
/// pays it as latency on brokers that do not answer a waiting fetch as soon
/// as data arrives (tansu, measured: p50 170 ms at 100 ms, single-digit ms
/// at 5 ms); on Apache Kafka it only bounds idle polling.
fn consumer_defaults(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "courier")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "5")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("socket.nagle.disable", "true")
        // Consumer lag per partition for `/metrics`.
        .set("statistics.interval.ms", "5000");
    c
}

fn with_settings(mut config: ClientConfig, settings: &BTreeMap<String, String>) -> ClientConfig {
    for (k, v) in settings {
        config.set(k, v);
    }
    config
}

/// Creates `topic` unless it exists. The replication factor is the
/// broker's default (`-1`), so a production cluster gets its configured
/// durability and a single test broker still works.
async fn create_topic(config: &ClientConfig, topic: &str, partitions: u32) -> Result<()> {
    // A connection that hangs in its TLS handshake (a listener that does
    // not speak TLS) is given up within the admin timeout, and says so.
    let mut config = config.clone();
    if config.get("socket.connection.setup.timeout.ms").is_none() {
        config.set(
            "socket.connection.setup.timeout.ms",
            (ADMIN_TIMEOUT / 3).as_millis().to_string(),
        );
    }
    let admin: AdminClient<BrokerLogs> = config
        .create_with_context(BrokerLogs)
        .map_err(|e| Error::unavailable(BACKEND, e))?;
    // An admin client's logs and errors are never delivered (nothing polls
    // its main queue): a client that polls its own, alongside, records why
    // no broker answered, when none did (a TLS or SASL failure is otherwise
    // only a timeout here). librdkafka's log level follows the `log`
    // crate's, so failures (`FAIL` lines, at warning level) are asked for
    // explicitly.
    let mut watched = config.clone();
    // It only connects: no producer id to ask the brokers for.
    watched.set("enable.idempotence", "false");
    if (watched.log_level as i32) < (RDKafkaLogLevel::Warning as i32) {
        watched.set_log_level(RDKafkaLogLevel::Warning);
    }
    let watcher: Option<ThreadedProducer<RecordingLogs>> =
        watched.create_with_context(RecordingLogs::default()).ok();
    let why = || {
        watcher
            .as_ref()
            .and_then(|w| w.context().last_failure())
            .map(|failure| format!(" (last broker failure: {failure})"))
            .unwrap_or_default()
    };
    let partitions = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = tokio::time::timeout(
        ADMIN_TIMEOUT + Duration::from_secs(1),
        admin.create_topics([&new_topic], &opts),
    )
    .await
    .map_err(|_| {
        Error::unavailable(
            BACKEND,
            format!("creating topic {topic} timed out{}", why()),
        )
    })?
    .map_err(|e| Error::unavailable(BACKEND, format!("creating topic {topic}: {e}{}", why())))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(%topic, partitions, "kafka topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::unavailable(
                    BACKEND,
                    format!("creating topic {name}: {code}"),
                ))
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Queue for KafkaQueue {
    async fn publish(&self, key: &str, payload: Bytes) -> Result<()> {
        // While the brokers do not answer, say so at once: a push waiting
        // out a delivery timeout helps no one.
        if !self.health.borrow().reachable {
            return Err(Error::unavailable(BACKEND, "no broker answers"));
        }
        let producer = self.producing.producer();
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.producing.rebuild(&format!("{code}: {reason}"), false);
        }
        let producer = self.producing.producer();
        let record = FutureRecord::to(&self.producing.topic)
            .key(key)
            .payload(&payload[..]);
        // The queue timeout bounds waiting for room in a full local queue;
        // message.timeout.ms bounds delivery; the outer timeout is a backstop.
        let send = producer.send(record, DELIVERY_TIMEOUT);
        let sent = tokio::time::timeout(DELIVERY_TIMEOUT + Duration::from_secs(1), send);
        // Brokers found gone while this waits: say so now rather than at
        // the delivery timeout. librdkafka may still deliver it later; the
        // caller's retry is then a repeat, which the store recognises.
        let mut health = self.health.clone();
        let gone = async move {
            if health.wait_for(|h| !h.reachable).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let started = std::time::Instant::now();
        tokio::select! {
            sent = sent => match sent {
                Ok(Ok(_)) => {
                    metrics::histogram!("courier_queue_produce_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    Ok(())
                }
                Ok(Err((e, _))) => {
                    // A message that timed out while the brokers answer
                    // the probe: the producer is wedged (waiting on state
                    // the broker no longer has), not the brokers.
                    let wedged = e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut)
                        && self.health.borrow().reachable;
                    if producer_forgotten(&e) || wedged {
                        self.producing.rebuild(&e.to_string(), false);
                    }
                    Err(Error::unavailable(BACKEND, e))
                }
                Err(_) => Err(Error::unavailable(BACKEND, "delivery report timed out")),
            },
            () = gone => Err(Error::unavailable(BACKEND, "no broker answers")),
        }
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>> {
        let consumer = KafkaConsumer::join(&self.consumer_config, &self.producing.topic, group)?;
        Ok(Box::new(consumer))
    }

    fn health(&self) -> watch::Receiver<QueueHealth> {
        self.health.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_names_brokers_and_topic() {
        let u = KafkaUrl::parse("kafka://a:9092,b:9093/courier-push").unwrap();
        assert_eq!(u.bootstrap, "a:9092,b:9093");
        assert_eq!(u.topic, "courier-push");
    }

    #[test]
    fn malformed_urls_are_rejected() {
        for bad in [
            "redis://a:1/t",
            "kafka://a:1",
            "kafka://a:1/",
            "kafka:///t",
            "kafka://a/t",
            "kafka://a:1/bad topic",
        ] {
            assert!(
                matches!(KafkaUrl::parse(bad), Err(Error::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_override_defaults() {
        let settings = BTreeMap::from([("linger.ms".to_owned(), "20".to_owned())]);
        let c = with_settings(producer_defaults("a:1"), &settings);
        assert_eq!(c.get("linger.ms"), Some("20"));
        assert_eq!(c.get("acks"), Some("all"));
    }
}
