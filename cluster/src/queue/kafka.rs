//! STUB: Kafka queue (to be implemented).
use std::collections::BTreeMap;
use async_trait::async_trait;
use bytes::Bytes;
use super::{Consumer, Queue};
use crate::{Error, Result};
/// Kafka queue.
pub struct KafkaQueue;
impl KafkaQueue { /// Connects.
    pub async fn connect(_url: &str, _partitions: u32, _settings: &BTreeMap<String, String>) -> Result<Self> { Err(Error::Closed) } }
#[async_trait]
impl Queue for KafkaQueue {
    async fn publish(&self, _: &str, _: Bytes) -> Result<()> { Err(Error::Closed) }
    async fn subscribe(&self, _: &str) -> Result<Box<dyn Consumer>> { Err(Error::Closed) }
}
