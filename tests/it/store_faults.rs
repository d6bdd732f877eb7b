//! The store of record under failure, on a real cluster whose store is two
//! shards, each a Patroni-managed pair of PostgreSQL nodes with synchronous
//! replication on the cluster's own etcd (plus Redis, the broker, logic,
//! two comets and two jobs as processes):
//!
//! - `kill -9` of the node holding a shard's primary while 100 users get
//!   1,000 pushes each: every push answered 202 is received once, in
//!   order, in one epoch; writes resume once Patroni promotes the standby
//!   (the time is printed);
//! - buckets moved between the shards while the pushes go on: nothing lost,
//!   doubled or renumbered;
//! - a standby stopped, and one held behind its lag bound: history reads
//!   still answer, never from the lagging one;
//! - a user offline for 1,500 messages gets all of them in order when it
//!   comes back, and pages further back to the first.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use courier_client::{Client, ClientConfig, Event};
use courier_cluster::postgres::routing::bucket_of;
use courier_testkit::etcd::EtcdServer;
use courier_testkit::patroni::PatroniShard;
use serde_json::{json, Value};
use support::cluster::{api_get, RealCluster, API_KEY};
use support::fleet::{self, pushes_survive};
use support::PASSWORD;
use tokio::time::Instant;

/// A cluster on two Patroni shards, `a` and `b`. Fields drop in order:
/// Courier's processes before the databases.
struct Stored {
    cluster: RealCluster,
    shards: Vec<PatroniShard>,
}

impl Stored {
    async fn start() -> Self {
        let etcd = EtcdServer::start().await.expect("etcd starts");
        let (a, b) = tokio::join!(
            PatroniShard::start(&etcd, "a", 2),
            PatroniShard::start(&etcd, "b", 2)
        );
        let shards = vec![a.expect("shard a starts"), b.expect("shard b starts")];
        let store = vec![
            ("COURIER_CLUSTER__SHARDS__A".to_owned(), shards[0].url()),
            ("COURIER_CLUSTER__SHARDS__B".to_owned(), shards[1].url()),
        ];
        let cluster = RealCluster::start_on(etcd, None, store).await;
        Self { cluster, shards }
    }

    fn url(&self) -> String {
        self.cluster.logic_url()
    }

    /// Logic's admin listener (its `/metrics`).
    fn admin(&self) -> String {
        format!("http://{}", self.cluster.logic.addrs["admin"])
    }
}

async fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .post(format!("{url}/api/v1{path}"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or_default())
}

/// The shard (index into `Stored::shards`) a user's inbox is on now.
fn shard_of(status: &Value, uid: &str) -> usize {
    let bucket = bucket_of(&format!("u:{uid}"));
    status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| {
            s["ranges"].as_array().unwrap().iter().any(|r| {
                let (first, last) = r.as_str().unwrap().split_once('-').unwrap();
                (first.parse::<u32>().unwrap()..=last.parse().unwrap()).contains(&bucket)
            })
        })
        .expect("every bucket is routed")
}

#[tokio::test]
async fn every_push_survives_the_death_of_a_shard_primary() {
    let mut stored = Stored::start().await;
    let url = stored.url();
    let fleet = fleet::fleet(&url, "u").await;
    let shard = &mut stored.shards[0];
    let killed = shard.leader().await.unwrap().expect("shard a has a leader");
    let report = pushes_survive(&url, &fleet, async {
        let at = Instant::now();
        shard.kill_node(killed);
        let leader = shard
            .wait_for_leader(Duration::from_secs(90))
            .await
            .unwrap();
        assert_ne!(leader, killed);
        eprintln!(
            "shard a: node {leader} promoted {:?} after the kill",
            at.elapsed()
        );
        // The old primary comes back as a standby of the new one.
        shard.start_node(killed).await.unwrap();
    })
    .await;
    eprintln!(
        "writes resumed {:?} after the kill ({} push requests refused meanwhile)",
        report.outage, report.refused
    );
    fleet::close(fleet).await;
}

#[tokio::test]
async fn every_push_survives_buckets_moving_between_shards() {
    let stored = Stored::start().await;
    let url = stored.url();
    let fleet = fleet::fleet(&url, "u").await;
    // The buckets of the first 40 users, each to the other shard: both
    // directions at once, while pushes to them go on.
    let status = api_get(&url, "/admin/store").await;
    let mut to_b = Vec::new();
    let mut to_a = Vec::new();
    for uid in fleet.uids.iter().take(40) {
        let bucket = bucket_of(&format!("u:{uid}"));
        let list = if shard_of(&status, uid) == 0 {
            &mut to_b
        } else {
            &mut to_a
        };
        if !list.contains(&bucket) {
            list.push(bucket);
        }
    }
    assert!(!to_a.is_empty() && !to_b.is_empty());
    let moved = to_a.len() + to_b.len();
    pushes_survive(&url, &fleet, async {
        let (status, reply) = post(
            &url,
            "/admin/store/moves",
            json!({"buckets": to_b, "to": "b"}),
        )
        .await;
        assert_eq!(status, 202, "{reply}");
        let finished = |n: usize| {
            let url = url.clone();
            async move {
                courier_testkit::until_some("the moves", Duration::from_secs(90), || async {
                    let moves = api_get(&url, "/admin/store").await["moves"].clone();
                    let moves = moves.as_array().cloned().unwrap_or_default();
                    if let Some(failed) = moves.iter().find(|m| m["state"] == "failed") {
                        panic!("a move failed: {failed}");
                    }
                    let done = moves.iter().filter(|m| m["state"] == "done").count();
                    (done >= n).then_some(moves)
                })
                .await
            }
        };
        finished(to_b.len()).await;
        // Every move of one batch runs on the logic that took it; one batch
        // at a time.
        let (status, reply) = post(
            &url,
            "/admin/store/moves",
            json!({"buckets": to_a, "to": "a"}),
        )
        .await;
        assert_eq!(status, 202, "{reply}");
        let moves = finished(moved).await;
        let held: Vec<u64> = moves
            .iter()
            .filter_map(|m| m["fenced_ms"].as_u64())
            .collect();
        eprintln!(
            "moved {moved} buckets; writes held per bucket: max {:?} ms, {} messages copied",
            held.iter().max(),
            moves
                .iter()
                .map(|m| m["messages"].as_u64().unwrap_or(0))
                .sum::<u64>()
        );
    })
    .await;
    let after = api_get(&url, "/admin/store").await;
    for uid in fleet.uids.iter().take(40) {
        let before = shard_of(&status, uid);
        assert_ne!(shard_of(&after, uid), before, "{uid} moved");
    }
    fleet::close(fleet).await;
}

/// History pages logic read from node `port` of `shard` so far (its
/// `courier_store_page_reads_total`, on the admin listener at `admin`).
async fn page_reads(admin: &str, shard: &str, port: u16) -> u64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let node = format!("node=\"127.0.0.1:{port}\"");
    let shard = format!("shard=\"{shard}\"");
    text.lines()
        .filter(|l| l.starts_with("courier_store_page_reads_total{"))
        .filter(|l| l.contains(&node) && l.contains(&shard))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Pushes `n` messages to `uid`; returns the last seq.
async fn push_n(url: &str, uid: &str, n: usize) -> u64 {
    let mut seq = 0;
    for i in 0..n {
        let (status, reply) = post(url, "/push/users", json!({"uids": [uid], "data": i})).await;
        assert_eq!(status, 202, "{reply}");
        seq = reply["seq"].as_u64().unwrap();
    }
    seq
}

/// Reads every stored message of `uid` over HTTP, in pages; returns the
/// seqs.
async fn history(url: &str, uid: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let after = seqs.last().copied().unwrap_or(0);
        let page = api_get(
            url,
            &format!("/users/{uid}/messages?after_seq={after}&limit=7"),
        )
        .await;
        let got: Vec<u64> = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("a page of {uid}'s history: {page}"))
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        if got.is_empty() {
            return seqs;
        }
        seqs.extend(got);
    }
}

#[tokio::test]
async fn history_reads_answer_with_a_standby_down_or_lagging_and_never_read_the_laggard() {
    let mut stored = Stored::start().await;
    let url = stored.url();
    let admin = stored.admin();
    let status = api_get(&url, "/admin/store").await;
    let on_a = (0..)
        .map(|i| format!("h{i}"))
        .find(|u| shard_of(&status, u) == 0)
        .unwrap();
    let on_b = (0..)
        .map(|i| format!("h{i}"))
        .find(|u| shard_of(&status, u) == 1)
        .unwrap();
    push_n(&url, &on_a, 10).await;
    push_n(&url, &on_b, 10).await;

    let readable = |shard: &str, node: u16| {
        let (url, shard) = (url.clone(), shard.to_owned());
        async move {
            let status = api_get(&url, "/admin/store").await;
            let s = status["shards"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == shard.as_str())
                .unwrap()
                .clone();
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["host"] == format!("127.0.0.1:{node}").as_str())
                .map(|n| n["readable"] == true)
        }
    };
    let a_leader = stored.shards[0].leader().await.unwrap().unwrap();
    let a_standby = 1 - a_leader;
    let a_standby_port = stored.shards[0].node_port(a_standby);
    // Healthy: the standby is in the read list and serves history pages.
    courier_testkit::until_some(
        "shard a's standby to serve reads",
        Duration::from_secs(30),
        || async { readable("a", a_standby_port).await.filter(|r| *r) },
    )
    .await;
    let before = page_reads(&admin, "a", a_standby_port).await;
    assert_eq!(history(&url, &on_a).await, (1..=10).collect::<Vec<_>>());
    let served = page_reads(&admin, "a", a_standby_port).await - before;
    assert!(served > 0, "the healthy standby served history reads");

    // Held behind: replay stopped, the standby falls past the 1 s bound and
    // leaves the read list; pages still hold everything, the newest too.
    stored.shards[0].hold_replay(a_standby).await.unwrap();
    courier_testkit::until_some(
        "the lagging standby to leave the read list",
        Duration::from_secs(30),
        || async { readable("a", a_standby_port).await.filter(|r| !*r) },
    )
    .await;
    push_n(&url, &on_a, 5).await;
    let before = page_reads(&admin, "a", a_standby_port).await;
    for _ in 0..5 {
        assert_eq!(history(&url, &on_a).await, (1..=15).collect::<Vec<_>>());
    }
    let served = page_reads(&admin, "a", a_standby_port).await - before;
    assert_eq!(served, 0, "the lagging standby served no history read");

    // Stopped: shard b's standby is killed; its pages still answer.
    let b_leader = stored.shards[1].leader().await.unwrap().unwrap();
    stored.shards[1].kill_node(1 - b_leader);
    push_n(&url, &on_b, 5).await;
    assert_eq!(history(&url, &on_b).await, (1..=15).collect::<Vec<_>>());

    // Caught up again: back in the read list.
    stored.shards[0].release_replay(a_standby).await.unwrap();
    courier_testkit::until_some(
        "the standby to rejoin the read list",
        Duration::from_secs(30),
        || async { readable("a", a_standby_port).await.filter(|r| *r) },
    )
    .await;
    assert_eq!(history(&url, &on_a).await, (1..=15).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_offline_user_gets_1500_messages_in_order_and_pages_back_to_the_first() {
    let stored = Stored::start().await;
    let url = stored.url();
    courier_client::register(&url, "nomad", PASSWORD)
        .await
        .unwrap();
    let (client, mut events) = Client::connect(ClientConfig::new(&url, "nomad", PASSWORD))
        .await
        .unwrap();
    push_n(&url, "nomad", 10).await;
    let mut shown = Vec::new();
    while shown.len() < 10 {
        if let Some(Event::Message(m)) = tokio::time::timeout(support::DEADLINE, events.recv())
            .await
            .unwrap()
        {
            shown.push(m.seq);
        }
    }
    let kept = client.position();
    client.close().await;

    // 1,500 while away, pushed 50 at a time.
    let http = reqwest::Client::new();
    for batch in 0..30 {
        let sends = (0..50).map(|i| {
            let http = &http;
            let url = &url;
            async move {
                let reply = http
                    .post(format!("{url}/api/v1/push/users"))
                    .bearer_auth(API_KEY)
                    .json(&json!({"uids": ["nomad"], "data": format!("away-{}", batch * 50 + i)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status().as_u16(), 202);
            }
        });
        futures::future::join_all(sends).await;
    }

    let mut config = ClientConfig::new(&url, "nomad", PASSWORD);
    config.resume_from = Some(kept);
    let (client, mut events) = Client::connect(config).await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 1500 {
        match tokio::time::timeout(support::DEADLINE, events.recv())
            .await
            .unwrap()
        {
            Some(Event::Message(m)) => seqs.push(m.seq),
            Some(e @ (Event::Gap { .. } | Event::Reset { .. })) => panic!("told {e:?}"),
            Some(_) => {}
            None => panic!("events ended"),
        }
    }
    assert_eq!(
        seqs,
        (11..=1510).collect::<Vec<_>>(),
        "all 1,500, in order, once"
    );

    // And further back, page by page, to the very first.
    let mut before = client.position();
    before.seq = 11;
    let mut older = Vec::new();
    loop {
        let page = client.history_before(None, before, 4).await.unwrap();
        assert!(!page.gap);
        let Some(first) = page.messages.first() else {
            break;
        };
        before.seq = first.seq;
        older.splice(0..0, page.messages.iter().map(|m| m.seq));
        if !page.more {
            break;
        }
    }
    assert_eq!(older, (1..=10).collect::<Vec<_>>());
    client.close().await;
}
