//! The delivery promise on a real cluster (PostgreSQL, Redis, etcd, a
//! Kafka-compatible broker; logic, two comets and two jobs as processes):
//! 100 users spread over both comets get 1,000 pushes each, in order, none
//! twice, in one epoch and without being told of a gap or a reset, while a
//! comet is killed, a job is killed, a live comet drops out of etcd, or
//! Redis loses everything it held (a flush; a restart without persistence).
//! Redis is only a cache of who is connected where: after it is lost the
//! comets report their connections again, accounts still log in and an
//! `Idempotency-Key` is still known (both live in PostgreSQL).

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{api_get, RealCluster, API_KEY};
use support::fleet::{self, pushes_survive, USERS};
use support::PASSWORD;
use tokio::time::Instant;

#[tokio::test]
async fn every_user_gets_every_push_when_a_comet_is_killed() {
    let mut cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    pushes_survive(&url, &fleet, cluster.comets[1].kill()).await;
    fleet::close(fleet).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_job_is_killed() {
    let mut cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    pushes_survive(&url, &fleet, cluster.jobs[0].kill()).await;
    fleet::close(fleet).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_live_comet_drops_out_of_etcd() {
    let cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    let etcd = cluster.etcd.addr();
    pushes_survive(&url, &fleet, async {
        // Revoke comet-a's lease: its record vanishes, job stops pushing to
        // it, until the comet notices and registers again.
        let endpoint = format!("http://{etcd}");
        let mut etcd = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let record = etcd.get("/courier/comets/comet-a", None).await.unwrap();
        let lease = record.kvs().first().expect("comet-a is registered").lease();
        etcd.lease_revoke(lease).await.unwrap();
    })
    .await;
    fleet::close(fleet).await;
}

/// Waits until logic knows every user of the fleet is connected again, and
/// says how long that took from `since`.
async fn every_session_is_back(url: &str, since: Instant) -> Duration {
    courier_testkit::until_some(
        "logic to know every connection again",
        Duration::from_secs(30),
        || async {
            let online = api_get(url, "/online/users?limit=1000").await;
            let users = online["users"].as_array().map_or(0, Vec::len);
            (users >= USERS).then(|| since.elapsed())
        },
    )
    .await
}

/// What must still hold after Redis lost everything: every account logs
/// in, and a push repeated with an `Idempotency-Key` it used before is a
/// repeat for every user (nothing stored or delivered again).
async fn accounts_and_keys_survived(url: &str, fleet: &fleet::Fleet) {
    for uid in &fleet.uids {
        courier_client::login(url, uid, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{uid} cannot log in: {e}"));
    }
    let reply: Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/push/users"))
        .bearer_auth(API_KEY)
        .header("idempotency-key", "push-0")
        .json(&json!({"uids": fleet.uids, "op": 1, "data": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["repeats"], USERS, "{reply}");
}

#[tokio::test]
async fn every_user_gets_every_push_when_redis_is_flushed() {
    let cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    let port = cluster.redis.port();
    let back = tokio::sync::OnceCell::new();
    pushes_survive(&url, &fleet, async {
        let flushed = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "FLUSHALL"])
            .output()
            .expect("redis-cli runs");
        assert!(flushed.status.success());
        // Redis answers at once: every connection is known again within
        // moments (the note in the README quotes the time printed here).
        let took = every_session_is_back(&url, Instant::now()).await;
        eprintln!("every session back {took:?} after FLUSHALL");
        let _ = back.set(took);
    })
    .await;
    assert!(back.get().is_some());
    accounts_and_keys_survived(&url, &fleet).await;
    fleet::close(fleet).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_redis_restarts_empty() {
    let mut cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    let redis = &mut cluster.redis;
    let report = pushes_survive(&url, &fleet, async {
        redis.kill();
        // Down for a while, pushes refused meanwhile, then back empty.
        tokio::time::sleep(Duration::from_secs(2)).await;
        redis.restart().await.unwrap();
        let took = every_session_is_back(&url, Instant::now()).await;
        eprintln!("every session back {took:?} after Redis answered again");
    })
    .await;
    eprintln!("pushes refused while Redis was down: {}", report.refused);
    accounts_and_keys_survived(&url, &fleet).await;
    fleet::close(fleet).await;
}
