//! The broker under failure, on a real cluster (PostgreSQL, Redis, etcd, a
//! tansu broker; logic, two comets and two jobs as processes) while 100
//! users get 1,000 pushes each:
//!
//! - `kill -9` of the broker, started again a few seconds later, with its
//!   log in memory (it comes back empty: no topic, no offsets, no producer
//!   state) and with its log on disk;
//! - the broker stopped for 60 s.
//!
//! Every push answered 202 is received once, in order, in one epoch, and
//! no Courier process is restarted. While the broker is away, pushes are
//! refused with 503 and `Retry-After`, and `/readyz` of logic and of each
//! job names the queue. The times printed (pushes accepted again after the
//! broker listens; the slowest refusal) are the numbers of docs/operations.md.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use courier_testkit::kafka::Storage;
use serde_json::json;
use support::cluster::{RealCluster, API_KEY};
use support::fleet::{self, pushes_survive, Report};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long the broker stays dead in the kill-and-restart tests.
const DOWN_BRIEFLY: Duration = Duration::from_secs(3);
/// How long it stays dead in the long outage test.
const DOWN_LONG: Duration = Duration::from_secs(60);

/// What `/readyz` says while no broker answers.
const UNREACHABLE: &str = "not ready: queue unreachable";

/// The `/readyz` URLs of logic and of each job.
fn readyz_urls(cluster: &RealCluster) -> Vec<String> {
    let mut urls = vec![format!("{}/readyz", cluster.logic_url())];
    urls.extend(
        cluster
            .jobs
            .iter()
            .map(|job| format!("http://{}/readyz", job.addrs["admin"])),
    );
    urls
}

/// Waits until every one of `urls` answers `want`.
async fn every_readyz_says(urls: &[String], want: &str) {
    courier_testkit::until_some(
        &format!("logic and the jobs to say {want:?}"),
        Duration::from_secs(30),
        || async {
            for url in urls {
                let body = match reqwest::get(url).await {
                    Ok(reply) => reply.text().await.unwrap_or_default(),
                    Err(_) => return None,
                };
                if body != want {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// Every Courier process still runs: none needed a restart.
fn nothing_restarted(cluster: &mut RealCluster) {
    assert!(cluster.logic.running(), "logic exited");
    for service in cluster.comets.iter_mut().chain(cluster.jobs.iter_mut()) {
        assert!(service.running(), "{} exited", service.id);
    }
}

/// Kills the broker, starts it again after `DOWN_BRIEFLY`, and reports
/// how long after it listened pushes were accepted again.
async fn broker_killed_and_restarted(storage: Storage) {
    let mut cluster = RealCluster::start_with_broker(storage).await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    let listening = OnceCell::new();
    let kafka = &mut cluster.kafka;
    let report: Report = pushes_survive(&url, &fleet, async {
        kafka.kill();
        tokio::time::sleep(DOWN_BRIEFLY).await;
        kafka.restart().await.unwrap();
        let _ = listening.set(Instant::now());
    })
    .await;
    let listening = *listening.get().unwrap();
    let back = report
        .first_accept_after(listening)
        .expect("pushes accepted after the broker came back");
    eprintln!(
        "{storage:?} broker: pushes accepted again {:?} after it listened; {} push requests refused, the slowest refusal took {:?}",
        back - listening,
        report.refused,
        report.slowest_refusal,
    );
    nothing_restarted(&mut cluster);
    fleet::close(fleet).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_memory_broker_is_killed_and_comes_back_empty() {
    broker_killed_and_restarted(Storage::Memory).await;
}

#[tokio::test]
async fn every_user_gets_every_push_when_a_durable_broker_is_killed_and_comes_back() {
    broker_killed_and_restarted(Storage::Durable).await;
}

#[tokio::test]
async fn pushes_are_refused_at_once_while_the_broker_is_away_for_a_minute() {
    let mut cluster = RealCluster::start().await;
    let url = cluster.logic_url();
    let fleet = fleet::fleet(&url, "u").await;
    let readyz = readyz_urls(&cluster);
    every_readyz_says(&readyz, "ready").await;
    let logic_admin = format!("http://{}", cluster.logic.addrs["admin"]);
    let kafka = &mut cluster.kafka;
    let refusal = OnceCell::new();
    let listening = OnceCell::new();
    let report = pushes_survive(&url, &fleet, async {
        kafka.kill();
        let down = Instant::now();
        every_readyz_says(&readyz, UNREACHABLE).await;
        let metrics = reqwest::get(format!("{logic_admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("courier_queue_reachable 0"),
            "logic's metrics do not say the queue is unreachable"
        );
        // A push of our own, to someone outside the fleet: refused, with
        // when to try again.
        let reply = reqwest::Client::new()
            .post(format!("{url}/api/v1/push/users"))
            .bearer_auth(API_KEY)
            .json(&json!({"uids": ["outsider"], "op": 1, "data": "x"}))
            .send()
            .await
            .unwrap();
        let _ = refusal.set((
            reply.status().as_u16(),
            reply
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or_default().to_owned()),
        ));
        tokio::time::sleep(DOWN_LONG.saturating_sub(down.elapsed())).await;
        kafka.restart().await.unwrap();
        let _ = listening.set(Instant::now());
        every_readyz_says(&readyz, "ready").await;
    })
    .await;
    assert_eq!(
        refusal.get(),
        Some(&(503, Some("1".to_owned()))),
        "a push while the broker is away"
    );
    let listening = *listening.get().unwrap();
    let back = report
        .first_accept_after(listening)
        .expect("pushes accepted after the broker came back");
    eprintln!(
        "broker away {DOWN_LONG:?}: {} push requests refused, the slowest refusal took {:?}; pushes accepted again {:?} after it listened",
        report.refused,
        report.slowest_refusal,
        back - listening,
    );
    nothing_restarted(&mut cluster);
    fleet::close(fleet).await;
}
