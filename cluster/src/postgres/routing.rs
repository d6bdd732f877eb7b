//! The sharding and routing rule: stream -> bucket by hash, bucket -> shard
//! by a routing table kept in discovery.
//!
//! A stream's key (`u:<uid>`, `r:<room>`) hashes (xxh3-64, seed 0: fixed
//! forever, since changing it would move every stream) to one of
//! [`BUCKETS`] buckets; a user's account lives in the bucket of its inbox,
//! so one shard holds both. The routing table maps each bucket to a shard
//! by name and is stored as JSON under `/courier/store/routing`, written
//! only by compare-and-swap (the first logic to start creates it, a bucket
//! move rewrites it) and watched by every logic, so a change reaches all of
//! them without a restart. Its `version` goes up by one with every change.
//!
//! The table is only a pointer: the shard itself decides whether it owns a
//! bucket (its `courier_buckets` rows, see `schema.sql`), so a logic acting
//! on a stale table is refused by the database and waits for the new one.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::discovery::{Discovery, View};
use crate::{Error, Result};

/// Buckets streams hash to. Fixed: the routing table records it, and a
/// table with another count is refused.
pub const BUCKETS: u32 = 1024;

/// The store record holding the routing table.
pub const ROUTING_RECORD: &str = "routing";

/// The bucket of a stream (or of an account, by its user's stream key).
pub fn bucket_of(stream_key: &str) -> u32 {
    let hash = xxhash_rust::xxh3::xxh3_64(stream_key.as_bytes());
    // The remainder is below BUCKETS, which fits a u32.
    u32::try_from(hash % u64::from(BUCKETS)).unwrap_or(0)
}

/// One run of consecutive buckets on one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub first: u32,
    pub last: u32,
    pub shard: String,
}

/// The routing table as stored: runs of buckets per shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutingTable {
    /// Bumped by every change.
    pub version: u64,
    /// Always [`BUCKETS`].
    pub buckets: u32,
    /// Every bucket exactly once, in order.
    pub ranges: Vec<Range>,
    /// The record's text this table was read from: what a change compares
    /// against (a record written by hand need not be in our formatting).
    #[serde(skip)]
    source: Option<String>,
}

impl PartialEq for RoutingTable {
    fn eq(&self, other: &Self) -> bool {
        (self.version, self.buckets, &self.ranges) == (other.version, other.buckets, &other.ranges)
    }
}

impl Eq for RoutingTable {}

impl RoutingTable {
    /// Every bucket spread over `shards` (sorted by name) in equal runs.
    pub fn spread(shards: &[String]) -> Self {
        let mut names: Vec<&String> = shards.iter().collect();
        names.sort();
        let n = u32::try_from(names.len().max(1)).unwrap_or(u32::MAX);
        let routes = (0..BUCKETS)
            .map(|b| {
                let i =
                    usize::try_from(u64::from(b) * u64::from(n) / u64::from(BUCKETS)).unwrap_or(0);
                names.get(i).map_or_else(String::new, |s| (*s).clone())
            })
            .collect::<Vec<_>>();
        Self::from_routes(1, &routes)
    }

    /// The shard of every bucket, in bucket order ("" for a bucket no range
    /// covers: a damaged table).
    pub fn routes(&self) -> Vec<String> {
        let mut routes = vec![String::new(); BUCKETS as usize];
        for range in &self.ranges {
            for b in range.first..=range.last.min(BUCKETS - 1) {
                routes[b as usize] = range.shard.clone();
            }
        }
        routes
    }

    /// The shard `bucket` is routed to.
    pub fn shard_of(&self, bucket: u32) -> Option<&str> {
        self.ranges
            .iter()
            .find(|r| r.first <= bucket && bucket <= r.last)
            .map(|r| r.shard.as_str())
    }

    /// The next version of this table, with `bucket` on `shard`.
    pub fn with_route(&self, bucket: u32, shard: &str) -> Self {
        let mut routes = self.routes();
        if let Some(r) = routes.get_mut(bucket as usize) {
            *r = shard.to_owned();
        }
        Self::from_routes(self.version.saturating_add(1), &routes)
    }

    fn from_routes(version: u64, routes: &[String]) -> Self {
        let mut ranges: Vec<Range> = Vec::new();
        for (b, shard) in routes.iter().enumerate() {
            let b = u32::try_from(b).unwrap_or(u32::MAX);
            match ranges.last_mut() {
                Some(r) if r.shard == *shard && r.last.saturating_add(1) == b => r.last = b,
                _ => ranges.push(Range {
                    first: b,
                    last: b,
                    shard: shard.clone(),
                }),
            }
        }
        Self {
            version,
            buckets: BUCKETS,
            ranges,
            source: None,
        }
    }

    /// A table from what the shards say they own (`owners`: bucket ->
    /// shard), the rest of the buckets spread over `shards`: how a lost
    /// table is rebuilt. Refuses a bucket two shards own.
    pub fn from_owners(shards: &[String], owners: &[(u32, String)]) -> Result<Self> {
        let mut routes = Self::spread(shards).routes();
        let mut claimed: std::collections::HashMap<u32, &str> = std::collections::HashMap::new();
        for (bucket, shard) in owners {
            if let Some(other) = claimed.insert(*bucket, shard) {
                if other != shard {
                    return Err(Error::corrupt(
                        "routing",
                        format!("bucket {bucket} is owned by both `{other}` and `{shard}`"),
                    ));
                }
            }
            if let Some(route) = routes.get_mut(*bucket as usize) {
                route.clone_from(shard);
            }
        }
        Ok(Self::from_routes(1, &routes))
    }

    /// The table in a record, checked: every bucket covered once.
    pub fn parse(json: &str) -> Result<Self> {
        let mut table: Self =
            serde_json::from_str(json).map_err(|e| Error::corrupt("routing table", e))?;
        table.source = Some(json.to_owned());
        if table.buckets != BUCKETS {
            return Err(Error::corrupt(
                "routing table",
                format!("{} buckets; this build uses {BUCKETS}", table.buckets),
            ));
        }
        if table.version == u64::MAX {
            return Err(Error::corrupt("routing table", "version at its maximum"));
        }
        let mut next = 0u32;
        for r in &table.ranges {
            if r.first != next || r.last < r.first || r.last >= BUCKETS || r.shard.is_empty() {
                return Err(Error::corrupt(
                    "routing table",
                    format!("range {}..={} breaks the cover at {next}", r.first, r.last),
                ));
            }
            next = r.last + 1;
        }
        if next != BUCKETS {
            return Err(Error::corrupt(
                "routing table",
                format!("covers {next} of {BUCKETS} buckets"),
            ));
        }
        Ok(table)
    }

    /// The record's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The routing table as every logic follows it.
#[derive(Clone)]
pub struct Routes {
    current: watch::Receiver<Option<Arc<RoutingTable>>>,
    discovery: Arc<dyn Discovery>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field(
                "version",
                &self.current.borrow().as_ref().map(|t| t.version),
            )
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Follows the table in `discovery`. If there is none yet, `propose`
    /// builds one and it is created (compare-and-swap: if another logic
    /// created one first, that one is followed).
    pub async fn follow(
        discovery: Arc<dyn Discovery>,
        propose: impl std::future::Future<Output = Result<RoutingTable>>,
    ) -> Result<Self> {
        let records = discovery.watch_store().await?;
        let present = records.borrow().get(ROUTING_RECORD).cloned();
        match present {
            // A record that is there but unsound is not replaced: someone
            // must look at it (restore it from a backup).
            Some(json) => {
                RoutingTable::parse(&json)?;
            }
            None => {
                let table = propose.await?;
                let created = discovery
                    .swap_store(ROUTING_RECORD, None, &table.to_json())
                    .await?;
                if created {
                    tracing::info!(
                        buckets = BUCKETS,
                        ranges = table.ranges.len(),
                        "created the store's routing table"
                    );
                }
            }
        }
        let (tx, rx) = watch::channel(parsed(&records.borrow()));
        tokio::spawn(follow(records, tx));
        let mut routes = Self {
            current: rx,
            discovery,
        };
        // The table this logic created, or the one another logic did.
        if routes.table().is_none() {
            routes
                .current
                .wait_for(Option::is_some)
                .await
                .map_err(|_| Error::Closed)?;
        }
        Ok(routes)
    }

    /// The table now.
    pub fn table(&self) -> Option<Arc<RoutingTable>> {
        self.current.borrow().clone()
    }

    /// Waits up to `patience` for a table newer than `version`.
    pub async fn newer_than(&self, version: u64, patience: Duration) -> Option<Arc<RoutingTable>> {
        let mut current = self.current.clone();
        let newer = tokio::time::timeout(
            patience,
            current.wait_for(|t| t.as_ref().is_some_and(|t| t.version > version)),
        )
        .await;
        match newer {
            Ok(Ok(table)) => table.clone(),
            _ => None,
        }
    }

    /// Replaces `old` with `new`; whether no one changed the table first.
    pub async fn swap(&self, old: &RoutingTable, new: &RoutingTable) -> Result<bool> {
        let expected = old.source.clone().unwrap_or_else(|| old.to_json());
        self.discovery
            .swap_store(ROUTING_RECORD, Some(&expected), &new.to_json())
            .await
    }
}

/// The table in a view of the store's records, if it is there and sound.
fn parsed(records: &View) -> Option<Arc<RoutingTable>> {
    let json = records.get(ROUTING_RECORD)?;
    match RoutingTable::parse(json) {
        Ok(table) => Some(Arc::new(table)),
        Err(e) => {
            tracing::error!(error = %e, "ignoring a damaged routing table");
            None
        }
    }
}

/// Publishes every sound new table until the last receiver is gone.
async fn follow(
    mut records: watch::Receiver<View>,
    table: watch::Sender<Option<Arc<RoutingTable>>>,
) {
    loop {
        tokio::select! {
            _ = table.closed() => return,
            changed = records.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(fresh) = parsed(&records.borrow_and_update()) else {
                    continue;
                };
                table.send_if_modified(|current| {
                    // Never step back to an older version (a stale watch
                    // replaying).
                    let newer = current.as_ref().is_none_or(|c| fresh.version > c.version);
                    if newer {
                        *current = Some(fresh);
                    }
                    newer
                });
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_in_range() {
        // Pinned: a different bucket for a key would strand its stream.
        assert_eq!(bucket_of("u:alice"), bucket_of("u:alice"));
        assert!(bucket_of("r:lobby") < BUCKETS);
        let spread: std::collections::HashSet<u32> = (0..10_000)
            .map(|i| bucket_of(&format!("u:user{i}")))
            .collect();
        assert!(
            spread.len() > 900,
            "10,000 users hit {} buckets",
            spread.len()
        );
    }

    #[test]
    fn a_spread_table_covers_every_bucket_in_equal_runs() {
        let t = RoutingTable::spread(&["b".into(), "a".into()]);
        assert_eq!(t.ranges.len(), 2);
        assert_eq!(t.shard_of(0), Some("a"));
        assert_eq!(t.shard_of(BUCKETS - 1), Some("b"));
        assert_eq!(t.ranges[0].last + 1, BUCKETS / 2);
        assert_eq!(RoutingTable::parse(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn moving_a_bucket_bumps_the_version_and_splits_the_run() {
        let t = RoutingTable::spread(&["a".into()]);
        let moved = t.with_route(7, "b");
        assert_eq!(moved.version, t.version + 1);
        assert_eq!(moved.shard_of(7), Some("b"));
        assert_eq!(moved.shard_of(6), Some("a"));
        assert_eq!(moved.shard_of(8), Some("a"));
        assert_eq!(moved.ranges.len(), 3);
        let back = moved.with_route(7, "a");
        assert_eq!(back.ranges.len(), 1);
    }

    #[test]
    fn a_lost_table_is_rebuilt_from_what_the_shards_own() {
        let shards = ["a".to_owned(), "b".to_owned()];
        let owners = [(3, "b".to_owned()), (900, "a".to_owned())];
        let t = RoutingTable::from_owners(&shards, &owners).unwrap();
        assert_eq!(t.shard_of(3), Some("b"));
        assert_eq!(t.shard_of(900), Some("a"));
        assert_eq!(t.shard_of(4), Some("a"), "the rest spread");
        let twice = [(3, "a".to_owned()), (3, "b".to_owned())];
        assert!(RoutingTable::from_owners(&shards, &twice).is_err());
    }

    #[test]
    fn a_damaged_table_is_refused() {
        assert!(RoutingTable::parse("{").is_err());
        let mut t = RoutingTable::spread(&["a".into()]);
        t.ranges[0].last = 10;
        assert!(RoutingTable::parse(&t.to_json()).is_err());
        let mut t = RoutingTable::spread(&["a".into()]);
        t.buckets = 7;
        assert!(RoutingTable::parse(&t.to_json()).is_err());
        let mut t = RoutingTable::spread(&["a".into()]);
        t.ranges[0].last = u32::MAX;
        assert!(
            RoutingTable::parse(&t.to_json()).is_err(),
            "past the last bucket"
        );
        let mut t = RoutingTable::spread(&["a".into()]);
        t.version = u64::MAX;
        assert!(RoutingTable::parse(&t.to_json()).is_err());
    }
}
