//! The PostgreSQL harness itself: a single server that survives a crash
//! with its data, and a Patroni shard that replicates synchronously, fails
//! over when its leader dies, takes the dead node back as a standby and
//! lets a test hold a standby's replay back.
//!
//! These start real PostgreSQL 15, Patroni and etcd, and fail (never skip)
//! when one is missing: run scripts/install-patroni.sh.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use courier_testkit::etcd::EtcdServer;
use courier_testkit::eventually_async;
use courier_testkit::patroni::PatroniShard;
use courier_testkit::postgres::{connect, PostgresServer};

/// How long a failover may take before the test calls it broken: well
/// above Patroni's 20 s leader lease.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(60);

/// How long a standby may take to replay what the leader committed.
const REPLAY_PATIENCE: Duration = Duration::from_secs(10);

async fn count(client: &tokio_postgres::Client, sql: &str) -> Option<i64> {
    client.query_one(sql, &[]).await.ok().map(|row| row.get(0))
}

#[tokio::test]
async fn postgres_server_keeps_its_data_across_kill_and_restart() {
    let started = Instant::now();
    let mut server = PostgresServer::start().await.unwrap();
    eprintln!("PostgresServer::start took {:?}", started.elapsed());
    assert!(server
        .url()
        .ends_with(&format!(":{}/courier", server.port())));
    let client = connect(&server.url()).await.unwrap();
    client
        .batch_execute("CREATE TABLE inbox (id int PRIMARY KEY); INSERT INTO inbox VALUES (7)")
        .await
        .unwrap();

    let port = server.port();
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(connect(&server.url()).await.is_err());

    server.restart().await.unwrap();
    assert!(server.pid().is_some());
    assert_eq!(server.port(), port);
    let client = connect(&server.url()).await.unwrap();
    let id: i32 = client
        .query_one("SELECT id FROM inbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 7);
}

#[tokio::test]
async fn patroni_shard_fails_over_and_takes_the_dead_leader_back() {
    let etcd = EtcdServer::start().await.unwrap();
    let started = Instant::now();
    let mut shard = PatroniShard::start(&etcd, "failover", 2).await.unwrap();
    eprintln!("PatroniShard::start (2 nodes) took {:?}", started.elapsed());
    assert_eq!(shard.len(), 2);
    let leader = shard.wait_for_leader(REPLAY_PATIENCE).await.unwrap();
    let standby = 1 - leader;

    // Synchronous replication is in place.
    let primary = connect(&shard.node_url(leader)).await.unwrap();
    let names: String = primary
        .query_one("SHOW synchronous_standby_names", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!names.is_empty(), "no synchronous standby named");
    let states: Vec<String> = primary
        .query("SELECT sync_state FROM pg_stat_replication", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(states, ["sync"]);

    // The multi-host URL reaches the leader when asked for a writable node.
    let rw = connect(&format!("{}?target_session_attrs=read-write", shard.url()))
        .await
        .unwrap();
    let in_recovery: bool = rw
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery);

    // A row committed on the leader is readable on the standby.
    primary
        .batch_execute("CREATE TABLE inbox (id int PRIMARY KEY); INSERT INTO inbox VALUES (1)")
        .await
        .unwrap();
    let replica = connect(&shard.node_url(standby)).await.unwrap();
    let replica = &replica;
    eventually_async("the row on the standby", REPLAY_PATIENCE, || async move {
        count(replica, "SELECT count(*) FROM inbox").await == Some(1)
    })
    .await;

    // The leader dies as a machine would; the standby takes over with
    // every acknowledged commit.
    let killed = Instant::now();
    shard.kill_node(leader);
    assert_eq!(shard.pids(leader), (None, None));
    let new_leader = shard.wait_for_leader(FAILOVER_PATIENCE).await.unwrap();
    eprintln!(
        "failover: node {standby} took writes {:.1} s after node {leader} was killed",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(new_leader, standby);
    let primary = connect(&shard.node_url(new_leader)).await.unwrap();
    primary
        .batch_execute("INSERT INTO inbox VALUES (2)")
        .await
        .unwrap();
    assert_eq!(count(&primary, "SELECT count(*) FROM inbox").await, Some(2));

    // The dead node comes back as a standby of the new leader.
    let restarted = Instant::now();
    shard.start_node(leader).await.unwrap();
    eprintln!(
        "node {leader} streamed again {:.1} s after start_node",
        restarted.elapsed().as_secs_f64()
    );
    let (patroni, postgres) = shard.pids(leader);
    assert!(patroni.is_some() && postgres.is_some());
    assert_eq!(shard.leader().await.unwrap(), Some(new_leader));
    let rejoined = connect(&shard.node_url(leader)).await.unwrap();
    let in_recovery: bool = rejoined
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the old leader came back as a leader");
    let rejoined = &rejoined;
    eventually_async(
        "the new row on the rejoined node",
        REPLAY_PATIENCE,
        || async move { count(rejoined, "SELECT count(*) FROM inbox").await == Some(2) },
    )
    .await;
}

#[tokio::test]
async fn held_replay_hides_new_commits_until_released() {
    let etcd = EtcdServer::start().await.unwrap();
    let shard = PatroniShard::start(&etcd, "replay", 2).await.unwrap();
    let leader = shard.wait_for_leader(REPLAY_PATIENCE).await.unwrap();
    let standby = 1 - leader;
    let primary = connect(&shard.node_url(leader)).await.unwrap();
    primary
        .batch_execute("CREATE TABLE inbox (id int PRIMARY KEY)")
        .await
        .unwrap();
    let replica = connect(&shard.node_url(standby)).await.unwrap();
    let replica = &replica;
    eventually_async("the table on the standby", REPLAY_PATIENCE, || async move {
        count(replica, "SELECT count(*) FROM inbox").await == Some(0)
    })
    .await;

    shard.hold_replay(standby).await.unwrap();
    // The commit returns once the synchronous standby has the WAL...
    primary
        .batch_execute("INSERT INTO inbox VALUES (1)")
        .await
        .unwrap();
    let written: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    // ...which it has received, but does not apply while held.
    eventually_async("the standby to receive the commit", REPLAY_PATIENCE, || {
        let written = written.clone();
        async move {
            let received = replica
                .query_one(
                    "SELECT pg_last_wal_receive_lsn() >= $1::text::pg_lsn",
                    &[&written],
                )
                .await
                .map(|row| row.get::<_, bool>(0));
            matches!(received, Ok(true))
        }
    })
    .await;
    assert_eq!(count(replica, "SELECT count(*) FROM inbox").await, Some(0));

    shard.release_replay(standby).await.unwrap();
    eventually_async("the row after resuming", REPLAY_PATIENCE, || async move {
        count(replica, "SELECT count(*) FROM inbox").await == Some(1)
    })
    .await;
}
