//! `courier bench` as a user runs it: the binary against an embedded
//! system (and, for `peer`, against the nats-server and Redis it starts),
//! small enough to finish in moments. Each run's `--json` report must
//! account for every connection, push and delivery; the numbers themselves
//! belong in bench/README.md, not here.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// Longest one bench run may take here.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `courier bench SUBCOMMAND` flags aimed at `system`: its logic and API
/// key, and (`with_comet`) its comet, then `extra`.
fn against(system: &courier::System, sub: &str, with_comet: bool, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        sub.to_owned(),
        "--server".to_owned(),
        system.logic_url(),
        "--api-key".to_owned(),
        system.api_key().to_owned(),
    ];
    if with_comet {
        args.extend(["--comet".to_owned(), system.comets[0].tcp.to_string()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// Runs `courier bench ARGS --json`; its one JSON object.
async fn bench(args: &[impl AsRef<std::ffi::OsStr> + std::fmt::Debug]) -> Value {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.arg("bench").args(args).arg("--json").kill_on_drop(true);
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("courier bench {args:?} did not finish"))
        .expect("courier bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "courier bench {args:?} failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}\n{stderr}"))
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
}

#[tokio::test]
async fn conns_holds_every_connection_and_reaches_each_with_a_push() {
    let system = start(1).await;
    let extra = ["--connections", "300", "--idle-secs", "1"];
    let r = bench(&against(&system, "conns", true, &extra)).await;
    assert_eq!(count(&r, "connected"), 300, "{r}");
    assert_eq!(r["connect"]["refused_total"], 0, "{r}");
    assert_eq!(count(&r, "deliveries_received"), 300, "{r}");
    assert_eq!(count(&r, "unexpected_frames"), 0, "{r}");
    assert_eq!(count(&r, "bad_frames"), 0, "{r}");
}

#[tokio::test]
async fn asks_gets_its_room_counts_answered() {
    let system = start(1).await;
    let comet = system.comets[0].tcp.to_string();
    let secret = system.config.auth.jwt_secret.clone();
    let args = [
        "asks",
        "--comet",
        comet.as_str(),
        "--jwt-secret",
        secret.as_str(),
        "--connections",
        "20",
        "--every-ms",
        "200",
        "--secs",
        "1",
    ];
    let r = bench(&args).await;
    assert_eq!(count(&r, "connections"), 20, "{r}");
    assert!(count(&r, "answered") > 0, "{r}");
    assert_eq!(count(&r, "other"), 0, "{r}");
}

#[tokio::test]
async fn fanout_delivers_every_push_to_every_member() {
    let system = start(1).await;
    let extra = ["--members", "40", "--pushes", "25", "--rate", "0"];
    let r = bench(&against(&system, "fanout", true, &extra)).await;
    assert_eq!(count(&r, "pushes_accepted"), 25, "{r}");
    assert_eq!(count(&r, "deliveries_received"), 40 * 25, "{r}");
    assert_eq!(count(&r, "members_complete"), 40, "{r}");
    assert!(count(&r["latency"], "samples") > 0, "{r}");
    assert_eq!(count(&r, "unexpected_frames"), 0, "{r}");
}

#[tokio::test]
async fn push_measures_the_push_route_and_the_ceiling() {
    let system = start(1).await;
    let extra = ["--requests", "200", "--concurrency", "8"];
    let pushed = bench(&against(&system, "push", false, &extra)).await;
    assert_eq!(pushed["route"], "POST /api/v1/push/users", "{pushed}");
    assert_eq!(pushed["statuses"], serde_json::json!({"202": 200}));
    let ceiling = bench(&against(
        &system,
        "push",
        false,
        &[&extra[..], &["--ceiling"]].concat(),
    ))
    .await;
    assert_eq!(ceiling["statuses"], serde_json::json!({"200": 200}));
    // Batched: every push of every request accounted for.
    let batched = bench(&against(
        &system,
        "push",
        false,
        &[&extra[..], &["--batch", "10"]].concat(),
    ))
    .await;
    assert_eq!(batched["route"], "POST /api/v1/push/batch", "{batched}");
    assert_eq!(batched["pushes"], 2000);
    assert_eq!(batched["statuses"], serde_json::json!({"202": 2000}));
}

#[tokio::test]
async fn history_pages_back_through_every_stored_message() {
    let system = start(1).await;
    let extra = ["--messages", "450", "--page", "100"];
    let r = bench(&against(&system, "history", false, &extra)).await;
    assert_eq!(count(&r, "messages"), 450, "{r}");
    assert_eq!(count(&r, "pages"), 5, "{r}");
    assert!(r["pages_per_sec"].as_f64().is_some_and(|p| p > 0.0), "{r}");
}

#[tokio::test]
async fn e2e_receives_every_push_it_sends() {
    let system = start(1).await;
    let extra = ["--count", "300", "--rate", "1000"];
    let r = bench(&against(&system, "e2e", false, &extra)).await;
    assert_eq!(count(&r, "received"), 300, "{r}");
    assert_eq!(r["push_errors"], serde_json::json!({}), "{r}");
    assert_eq!(count(&r["latency"], "samples"), 300, "{r}");
}

#[tokio::test]
async fn peer_runs_the_same_fanout_against_nats_and_redis() {
    let r = bench(&[
        "peer",
        "--subscribers",
        "30",
        "--publishes",
        "20",
        "--rate",
        "0",
    ])
    .await;
    let targets = r["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert_eq!(names, ["nats", "redis"], "{r}");
    for t in targets {
        assert_eq!(count(t, "connected"), 30, "{t}");
        assert_eq!(count(t, "published"), 20, "{t}");
        assert_eq!(count(t, "deliveries_received"), 30 * 20, "{t}");
    }
}
