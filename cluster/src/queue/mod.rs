//! The message queue between logic (producer) and job (consumer group).
//!
//! Semantics are Kafka's, which the `memory://` queue reproduces in-process:
//! a topic of partitions, a message key chooses the partition (so one key's
//! messages stay in order), consumers of one group share the partitions, and
//! a group resumes from its last committed offset after a rebalance or
//! restart. Delivery is at-least-once: job commits an offset only after the
//! comets it pushed to have answered.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::Result;

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;

/// One consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Bytes,
}

/// What a consumer sees next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    Message(Delivery),
    /// These partitions now belong to this consumer.
    Assigned(Vec<i32>),
    /// These partitions were taken away: stop committing for them. Their
    /// uncommitted messages will be delivered again to their new owner.
    Revoked(Vec<i32>),
}

/// How the queue is doing, as its own probing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueHealth {
    /// The brokers answered the last probe. While they do not, publishing
    /// fails at once rather than after a delivery timeout.
    pub reachable: bool,
    /// How many times the queue was found to have lost messages it had
    /// taken (a broker that came back without its log): a count that only
    /// goes up, so a watcher sees every loss.
    pub losses: u64,
}

impl Default for QueueHealth {
    fn default() -> Self {
        Self {
            reachable: true,
            losses: 0,
        }
    }
}

/// A topic to publish to and consume from.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Publishes `payload` under `key` and returns once the queue has durably
    /// accepted it (for Kafka: acknowledged by all in-sync replicas).
    async fn publish(&self, key: &str, payload: Bytes) -> Result<()>;
    /// Joins consumer group `group`.
    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>>;
    /// The queue's health, kept up to date.
    fn health(&self) -> watch::Receiver<QueueHealth>;
}

/// A member of a consumer group. Both methods take `&self` so one task can
/// wait for messages while others commit.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// The next message or rebalance event.
    async fn next(&self) -> Result<ConsumerEvent>;
    /// Marks every message of `partition` up to and including `offset` as
    /// processed. Committing a partition this consumer no longer owns is
    /// ignored.
    async fn commit(&self, partition: i32, offset: i64) -> Result<()>;
}
