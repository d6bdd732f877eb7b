//! Operating the store of record: what its shards and nodes look like, and
//! moving buckets between shards. The sharded PostgreSQL store implements
//! it ([`crate::postgres::PgStore`]); `memory://` has nothing to operate.

use async_trait::async_trait;
use serde::Serialize;

use crate::Result;

/// The store's shards, routing and moves, as the admin route shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStatus {
    /// The routing table's version.
    pub routing_version: u64,
    pub shards: Vec<ShardStatus>,
    /// Moves this logic ran or is running, oldest first.
    pub moves: Vec<MoveStatus>,
}

/// One shard in [`StoreStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub name: String,
    /// The schema is applied: this logic reached the shard at least once.
    pub ready: bool,
    /// Buckets the routing table sends here.
    pub buckets: u32,
    /// Those buckets as runs, `first-last`.
    pub ranges: Vec<String>,
    pub nodes: Vec<NodeStatus>,
}

/// One node of a shard as the last probe found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// `host:port`.
    pub host: String,
    /// `primary`, `standby`, or `down` (did not answer the last probe).
    pub role: String,
    /// A standby within the lag bound: history reads go here.
    pub readable: bool,
    /// Replay lag at the last probe in ms; `None` when it did not answer or
    /// is the primary.
    pub lag_ms: Option<u64>,
}

/// Where a bucket move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveState {
    Copying,
    Fenced,
    CleaningUp,
    Done,
    Failed,
}

/// One bucket move.
#[derive(Debug, Clone, Serialize)]
pub struct MoveStatus {
    pub bucket: u32,
    pub from: String,
    pub to: String,
    pub state: MoveState,
    /// Messages copied so far.
    pub messages: u64,
    /// Streams in the bucket when it was fenced.
    pub streams: u64,
    /// How long writes of the bucket were held, in ms.
    pub fenced_ms: Option<u64>,
    pub error: Option<String>,
}

/// Operating the store of record. See the module docs.
#[async_trait]
pub trait StoreAdmin: Send + Sync + 'static {
    /// Shards, nodes, routing and moves as they stand.
    fn status(&self) -> StoreStatus;
    /// How many buckets streams hash to.
    fn buckets(&self) -> u32;
    /// Moves `bucket` to shard `to` while writes go on; returns what it did.
    async fn move_bucket(&self, bucket: u32, to: &str) -> Result<MoveStatus>;
}
