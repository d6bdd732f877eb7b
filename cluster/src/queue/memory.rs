//! STUB: in-process queue (to be implemented).
use async_trait::async_trait;
use bytes::Bytes;
use super::{Consumer, Queue};
use crate::{Error, Result};
/// In-process partitioned queue.
#[derive(Debug)]
pub struct MemoryQueue;
impl MemoryQueue { /// New queue.
    pub fn new(_partitions: u32) -> Self { Self } }
#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, _: &str, _: Bytes) -> Result<()> { Err(Error::Closed) }
    async fn subscribe(&self, _: &str) -> Result<Box<dyn Consumer>> { Err(Error::Closed) }
}
