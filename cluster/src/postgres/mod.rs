//! The store of record in sharded PostgreSQL: the `postgres://` backend of
//! [`Inbox`](crate::Inbox), [`Accounts`](crate::Accounts) and
//! [`RoomRules`](crate::RoomRules).
//!
//! - **Shards** ([`shard`]): each a replication group named by one
//!   multi-host URL; writes go to its primary, history pages to a standby
//!   within the lag bound ([`nodes`]). Failover is the group manager's job
//!   (Patroni, pg_auto_failover); Courier only follows the new primary.
//! - **Routing** ([`routing`]): stream -> bucket by hash, bucket -> shard by
//!   a table in discovery. A write or read the shard refuses as not its
//!   bucket waits (up to `move_wait`) for a newer table and goes there.
//! - **Group commit** ([`batch`]): concurrent appends and acks to one shard
//!   share a transaction.
//! - **Retention** ([`retention`]) and **bucket moves** ([`moves`]).
//!
//! Every shard gets the schema (`schema.sql`) and the rows of the buckets
//! the table routes to it when this store first reaches it; a shard that
//! cannot be reached at start is prepared in the background, and until
//! then its streams answer `Unavailable` while the others work.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courier_runtime::backoff::Backoff;
use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::discovery::Discovery;
use crate::inbox::InboxOptions;
use crate::store_admin::{MoveStatus, NodeStatus, ShardStatus, StoreAdmin, StoreStatus};
use crate::tls::BackendTls;
use crate::{Error, Result};

pub(crate) mod batch;
pub mod moves;
pub mod nodes;
mod probe;
mod retention;
pub mod routing;
mod schema;
pub(crate) mod shard;
pub(crate) mod sql;
mod tls;

use batch::{Batcher, Write, Written};
use routing::{bucket_of, Routes, RoutingTable};
use shard::Shard;
pub(crate) use shard::{HeadRow, Routed};

/// How the store behaves; every field has a production default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Retention and dedup window.
    pub inbox: InboxOptions,
    /// A standby lagging more than this leaves the read list.
    pub max_read_lag: Duration,
    /// How often standbys are probed (and the primary stamped).
    pub probe_interval: Duration,
    /// Connections to each shard's primary.
    pub pool_size: usize,
    /// Group commits in flight to each shard's primary. Few is better:
    /// batches in flight together touch the same hot streams and wait for
    /// each other's commits, while a batch that waits grows.
    pub commits_in_flight: usize,
    /// Connections to each node for history reads.
    pub read_pool_size: usize,
    /// Items per group commit, at most.
    pub batch_max: usize,
    /// How long one statement (or getting a connection) may take.
    pub statement_timeout: Duration,
    /// How long a write or read of a bucket being moved waits for the new
    /// route before it fails as unavailable.
    pub move_wait: Duration,
    /// How often expired rows are deleted.
    pub retention_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            inbox: InboxOptions::default(),
            max_read_lag: Duration::from_secs(1),
            probe_interval: Duration::from_millis(500),
            pool_size: 8,
            commits_in_flight: 1,
            read_pool_size: 4,
            batch_max: 256,
            statement_timeout: Duration::from_secs(5),
            move_wait: Duration::from_secs(5),
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// One shard as the store uses it.
pub(crate) struct ShardHandle {
    pub(crate) shard: Arc<Shard>,
    batcher: Batcher,
    /// Schema applied and bucket rows seeded.
    ready: Arc<AtomicBool>,
}

/// The sharded PostgreSQL store. See the module docs.
pub struct PgStore {
    shards: BTreeMap<String, Arc<ShardHandle>>,
    routes: Routes,
    opts: StoreOptions,
    moves: Mutex<Vec<MoveStatus>>,
    _stop: DropGuard,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("shards", &self.shards.keys().collect::<Vec<_>>())
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// The store over `shards` (name -> URL), following (and if need be
    /// creating) the routing table in `discovery`. `writer` names this
    /// process's heartbeat row. Fails if a URL is malformed; a shard that
    /// cannot be reached is prepared in the background. TLS as each URL's
    /// `sslmode` says, trusting the system's roots; see
    /// [`PgStore::connect_tls`].
    pub async fn connect(
        shards: &BTreeMap<String, String>,
        discovery: Arc<dyn Discovery>,
        opts: StoreOptions,
        writer: &str,
    ) -> Result<Arc<Self>> {
        Self::connect_tls(shards, discovery, opts, writer, &BackendTls::default()).await
    }

    /// [`PgStore::connect`], a certificate checked (`sslmode=verify-ca` or
    /// `verify-full`) against `tls`'s CAs.
    pub async fn connect_tls(
        shards: &BTreeMap<String, String>,
        discovery: Arc<dyn Discovery>,
        opts: StoreOptions,
        writer: &str,
        tls: &BackendTls,
    ) -> Result<Arc<Self>> {
        if shards.is_empty() {
            return Err(Error::bad_url("postgres://", "no shard configured"));
        }
        let mut handles = BTreeMap::new();
        for (name, url) in shards {
            let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            if name.is_empty() || name.len() > 64 || !name.bytes().all(plain) {
                return Err(Error::bad_url(
                    "postgres://",
                    format!("shard name `{name}`: 1-64 of [A-Za-z0-9_-]"),
                ));
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::bad_url(
                    url,
                    format!("shard `{name}`: expected postgres://user@host:port,.../database"),
                ));
            }
            let shard = Shard::new(name, url, opts, tls)?;
            handles.insert(
                name.clone(),
                Arc::new(ShardHandle {
                    batcher: Batcher::start(shard.clone()),
                    shard,
                    ready: Arc::new(AtomicBool::new(false)),
                }),
            );
        }
        let names: Vec<String> = shards.keys().cloned().collect();
        let stop = CancellationToken::new();
        let mut unready = Vec::new();
        for handle in handles.values() {
            match schema::prepare(&handle.shard).await {
                Ok(()) => handle.ready.store(true, Ordering::Release),
                Err(e) => {
                    let why = match &e {
                        Error::Unavailable { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    unready.push(format!("shard `{}`: {why}", handle.shard.name));
                    tracing::warn!(shard = %handle.shard.name, error = %e, "shard not reachable yet; preparing it in the background");
                    tokio::spawn(schema::prepare_until_ready(
                        handle.shard.clone(),
                        handle.ready.clone(),
                        stop.clone(),
                    ));
                }
            }
            tokio::spawn(probe::probe(
                handle.shard.clone(),
                writer.to_owned(),
                stop.clone(),
            ));
            tokio::spawn(retention::sweep(
                handle.shard.clone(),
                opts.retention_interval,
                stop.clone(),
            ));
        }
        let all: BTreeMap<String, Arc<Shard>> = handles
            .iter()
            .map(|(name, h)| (name.clone(), h.shard.clone()))
            .collect();
        let every_shard_ready = handles.values().all(|h| h.ready.load(Ordering::Acquire));
        // With no table yet: a fresh store spreads the buckets; a store
        // whose table was lost gets it back from what the shards own.
        let propose = async {
            if !every_shard_ready {
                return Err(Error::unavailable(
                    "postgres",
                    format!(
                        "no routing table yet, and not every shard can be reached to build one \
                         ({})",
                        unready.join("; ")
                    ),
                ));
            }
            RoutingTable::from_owners(&names, &schema::owners(&all).await?)
        };
        let routes = Routes::follow(discovery, propose).await?;
        // Seeded before the store is handed out when every shard answers,
        // so the first write finds its bucket; else once they all do.
        let seeded = match (every_shard_ready, routes.table()) {
            (true, Some(table)) => schema::seed_new_buckets(&all, &table).await.is_ok(),
            _ => false,
        };
        if !seeded {
            tokio::spawn(seed_when_ready(
                all,
                handles.values().map(|h| h.ready.clone()).collect(),
                routes.clone(),
                stop.clone(),
            ));
        }
        Ok(Arc::new(Self {
            shards: handles,
            routes,
            opts,
            moves: Mutex::new(Vec::new()),
            _stop: stop.drop_guard(),
        }))
    }

    /// The shard `bucket` is routed to now, and the table that says so.
    fn route(&self, bucket: u32) -> Result<(Arc<RoutingTable>, Arc<ShardHandle>)> {
        let table = self
            .routes
            .table()
            .ok_or_else(|| Error::unavailable("postgres", "no routing table"))?;
        let name = table.shard_of(bucket).unwrap_or_default();
        let handle = self.handle_ready(name)?.clone();
        Ok((table, handle))
    }

    /// The shard named `name`, if this logic is configured with it and has
    /// prepared it.
    pub(crate) fn handle_ready(&self, name: &str) -> Result<&Arc<ShardHandle>> {
        let Some(handle) = self.shards.get(name) else {
            return Err(Error::unavailable(
                "postgres",
                format!(
                    "shard `{name}` is in the routing table but not in this logic's configuration"
                ),
            ));
        };
        if !handle.ready.load(Ordering::Acquire) {
            return Err(Error::unavailable(
                "postgres",
                format!("shard `{name}` is not reachable yet"),
            ));
        }
        Ok(handle)
    }

    /// Runs `op` on the shard serving `key`'s bucket; when the shard says
    /// the bucket is not its own, waits for a newer routing table (a move)
    /// and runs it again there.
    pub(crate) async fn routed<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn(Arc<ShardHandle>, u32) -> Fut,
        Fut: std::future::Future<Output = Result<Routed<T>>>,
    {
        let bucket = bucket_of(key);
        let deadline = tokio::time::Instant::now() + self.opts.move_wait;
        loop {
            let (table, handle) = self.route(bucket)?;
            match op(handle, bucket).await? {
                Routed::Done(v) => return Ok(v),
                Routed::Moved => {
                    metrics::counter!("courier_store_moved_total").increment(1);
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if self.routes.newer_than(table.version, left).await.is_none() {
                        return Err(Error::unavailable(
                            "postgres",
                            format!("bucket {bucket} is being moved; retry shortly"),
                        ));
                    }
                }
            }
        }
    }

    /// Queues one write to `key`'s stream.
    pub(crate) async fn write(&self, key: &str, write: impl Fn() -> Write) -> Result<Written> {
        self.routed(key, |handle, bucket| {
            let item = write();
            async move {
                Ok(
                    match handle.batcher.write(key.to_owned(), bucket, item).await? {
                        Written::Moved => Routed::Moved,
                        written => Routed::Done(written),
                    },
                )
            }
        })
        .await
    }

    /// What each node of `shard` looked like at the last probe.
    pub fn nodes(&self, shard: &str) -> Vec<NodeStatus> {
        self.shards
            .get(shard)
            .map(|h| h.shard.nodes.status())
            .unwrap_or_default()
    }

    /// Deletes what is past the retention (and dedup keys past their window)
    /// on every shard now, rather than at the next sweep; returns the rows
    /// deleted.
    pub async fn expire_now(&self) -> Result<u64> {
        let mut deleted = 0;
        for handle in self.shards.values() {
            deleted += retention::sweep_once(&handle.shard).await?;
        }
        Ok(deleted)
    }

    /// The shard `key`'s stream (or account, or room's rule and members)
    /// is routed to now.
    pub fn shard_of(&self, key: &str) -> Option<String> {
        let table = self.routes.table()?;
        table.shard_of(bucket_of(key)).map(str::to_owned)
    }
}

#[async_trait::async_trait]
impl StoreAdmin for PgStore {
    fn status(&self) -> StoreStatus {
        let table = self.routes.table();
        let shards = self
            .shards
            .iter()
            .map(|(name, handle)| {
                let ranges: Vec<String> = table
                    .iter()
                    .flat_map(|t| t.ranges.iter())
                    .filter(|r| r.shard == *name)
                    .map(|r| format!("{}-{}", r.first, r.last))
                    .collect();
                let buckets = table
                    .iter()
                    .flat_map(|t| t.ranges.iter())
                    .filter(|r| r.shard == *name)
                    .map(|r| r.last.saturating_sub(r.first).saturating_add(1))
                    .sum();
                ShardStatus {
                    name: name.clone(),
                    ready: handle.ready.load(Ordering::Acquire),
                    buckets,
                    ranges,
                    nodes: handle.shard.nodes.status().into_iter().collect(),
                }
            })
            .collect();
        StoreStatus {
            routing_version: table.map_or(0, |t| t.version),
            shards,
            moves: self.moves.lock().clone(),
        }
    }

    fn buckets(&self) -> u32 {
        routing::BUCKETS
    }

    async fn move_bucket(&self, bucket: u32, to: &str) -> Result<MoveStatus> {
        PgStore::move_bucket(self, bucket, to).await
    }
}

/// Seeds the buckets no shard has rows for ([`schema::seed_new_buckets`])
/// once every shard is ready, retrying until it is done or `stop` fires.
async fn seed_when_ready(
    shards: BTreeMap<String, Arc<Shard>>,
    ready: Vec<Arc<AtomicBool>>,
    routes: Routes,
    stop: CancellationToken,
) {
    let mut pauses = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if ready.iter().all(|r| r.load(Ordering::Acquire)) {
            let seeded = match routes.table() {
                Some(table) => schema::seed_new_buckets(&shards, &table).await,
                None => Err(Error::unavailable("postgres", "no routing table")),
            };
            match seeded {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "cannot seed new buckets yet"),
            }
        }
        if !pauses.wait_or(&stop).await {
            return;
        }
    }
}
