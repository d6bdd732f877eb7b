//! The account-store contract, written once and run against memory, a single
//! Redis and a Redis Cluster (each Redis test starts its own real server; a
//! server that cannot start fails the test). Plus the Redis store's error
//! mapping: unreachable -> `Unavailable`, garbage under our key -> `Corrupt`.
#![allow(clippy::unwrap_used)]

use courier_cluster::accounts::memory::MemoryAccounts;
use courier_cluster::accounts::redis::RedisAccounts;
use courier_cluster::sessions::redis::RedisConn;
use courier_cluster::{Account, Accounts, Error};
use courier_testkit::redis::{RedisCluster, RedisServer};

fn account(uid: &str, hash: &str) -> Account {
    Account {
        uid: uid.into(),
        password_hash: hash.into(),
        created_at_ms: 1_700_000_000_000,
    }
}

async fn create_once_then_get(a: &dyn Accounts) {
    assert_eq!(a.get("alice").await.unwrap(), None);
    let first = account("alice", "$argon2id$v=19$first");
    assert!(a.create(&first).await.unwrap());
    assert!(
        !a.create(&account("alice", "$argon2id$v=19$second"))
            .await
            .unwrap(),
        "uid taken twice"
    );
    assert_eq!(a.get("alice").await.unwrap(), Some(first));
    assert_eq!(a.get("bob").await.unwrap(), None);

    let bob = account("bob", "$argon2id$v=19$bob");
    assert!(a.create(&bob).await.unwrap());
    assert_eq!(a.get("bob").await.unwrap(), Some(bob));
}

#[tokio::test]
async fn memory_create_once_then_get() {
    create_once_then_get(&MemoryAccounts::default()).await;
}

#[tokio::test]
async fn redis_single_create_once_then_get() {
    let server = RedisServer::start().await.unwrap();
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    create_once_then_get(&RedisAccounts::new(conn)).await;
}

#[tokio::test]
async fn redis_cluster_create_once_then_get() {
    let cluster = RedisCluster::start().await.unwrap();
    let conn = RedisConn::connect(&cluster.url()).await.unwrap();
    create_once_then_get(&RedisAccounts::new(conn)).await;
}

#[tokio::test]
async fn redis_garbage_is_corrupt() {
    let server = RedisServer::start().await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg("courier:account:mallory")
        .arg("not json")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let accounts = RedisAccounts::new(RedisConn::connect(&server.url()).await.unwrap());
    let err = accounts.get("mallory").await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn redis_stopped_server_is_unavailable() {
    let server = RedisServer::start().await.unwrap();
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    let accounts = RedisAccounts::new(conn);
    drop(server);
    let err = accounts.get("alice").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn bad_redis_url_is_rejected() {
    for url in ["redis+cluster://", "http://127.0.0.1:1", "no-scheme"] {
        let err = RedisConn::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
    }
}
