//! PostgreSQL stores for the contract suites: a real server per test
//! (the test kit's, on a free port in a temp dir), with one shard, or two
//! shards in two databases of it (so routing is exercised), the routing
//! table in memory discovery.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use courier_cluster::discovery::memory::MemoryDiscovery;
use courier_cluster::inbox::InboxOptions;
use courier_cluster::postgres::{PgStore, StoreOptions};
use courier_testkit::postgres::PostgresServer;

/// The options the suites run with: `inbox` as given, sweeps only when a
/// test asks (`expire_now`).
pub fn options(inbox: InboxOptions) -> StoreOptions {
    StoreOptions {
        inbox,
        retention_interval: std::time::Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// A store of one shard, `main`.
pub async fn single(inbox: InboxOptions) -> (PostgresServer, Arc<PgStore>) {
    let server = PostgresServer::start().await.unwrap();
    let shards = BTreeMap::from([("main".to_owned(), server.url())]);
    (server, connect(&shards, inbox).await)
}

/// A store of two shards, `a` (the server's `courier` database) and `b` (a
/// second database), half the buckets each.
pub async fn sharded(inbox: InboxOptions) -> (PostgresServer, Arc<PgStore>) {
    let server = PostgresServer::start().await.unwrap();
    let second = server.create_database("courier_b").await.unwrap();
    let shards = BTreeMap::from([("a".to_owned(), server.url()), ("b".to_owned(), second)]);
    (server, connect(&shards, inbox).await)
}

async fn connect(shards: &BTreeMap<String, String>, inbox: InboxOptions) -> Arc<PgStore> {
    PgStore::connect(
        shards,
        Arc::new(MemoryDiscovery::default()),
        options(inbox),
        "test",
    )
    .await
    .unwrap()
}
