//! The monitoring that ships in `deploy/`: the alert and recording rules
//! pass `promtool check` and their own `promtool test rules`, and a real
//! Prometheus (Debian's `prometheus`) scraping a real cluster (PostgreSQL,
//! Redis, etcd, a Kafka-compatible broker; logic, two comets and two jobs
//! as processes) while it delivers finds data for every query of the
//! Grafana dashboard and of the rules, and fires no alert.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use courier_testkit::ServerProcess;
use serde_json::{json, Value};
use support::cluster::{RealCluster, API_KEY};
use support::PASSWORD;

/// Longest wait for one query to return data: rates over a window need
/// two scrapes with traffic in between.
const QUERY_DEADLINE: Duration = Duration::from_secs(90);

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// Runs `promtool ARGS`; fails loudly with its output unless it succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot run ({e}): install Debian's `prometheus` (scripts/test.sh does)"
            )
        });
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_rules_and_the_sample_config_pass_promtool() {
    promtool(&["check", "rules", "courier-rules.yml"]);
    promtool(&["test", "rules", "courier-rules.test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}

/// Every query of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/courier.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

/// An alert's query without its threshold (`x > 0.25` -> `x`): what must
/// return data in a healthy cluster, where the alert itself must not.
fn without_threshold(expr: &str) -> String {
    let expr = expr.trim();
    for op in [" > ", " < ", " == ", " >= ", " <= ", " != "] {
        if let Some((left, right)) = expr.rsplit_once(op) {
            if right.trim().parse::<f64>().is_ok() {
                return left.trim().to_owned();
            }
        }
    }
    expr.to_owned()
}

/// GET `path` of the Prometheus HTTP API: its `data`.
async fn api(base: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let reply: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/{path}"))
        .query(query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status"], "success", "{path} {query:?}: {reply}");
    reply["data"].clone()
}

#[tokio::test]
async fn prometheus_finds_data_for_every_dashboard_and_rule_query() {
    let cluster = RealCluster::start().await;
    let admin = |s: &support::cluster::Service| format!("\"{}\"", s.addrs["admin"]);
    let list = |services: &[support::cluster::Service]| {
        services.iter().map(admin).collect::<Vec<_>>().join(", ")
    };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n\
         \x20 - job_name: courier-logic\n    static_configs:\n      - targets: [{logic}]\n\
         \x20 - job_name: courier-comet\n    static_configs:\n      - targets: [{comets}]\n\
         \x20 - job_name: courier-job\n    static_configs:\n      - targets: [{jobs}]\n",
        rules = deploy("prometheus/courier-rules.yml").display(),
        logic = admin(&cluster.logic),
        comets = list(&cluster.comets),
        jobs = list(&cluster.jobs),
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = courier_testkit::free_port().unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!(
        "--config.file={}",
        dir.path().join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.path().join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let _prometheus = ServerProcess::spawn(
        "prometheus",
        cmd,
        None,
        "install Debian's `prometheus` (scripts/test.sh does)",
    )
    .expect("prometheus starts");
    let base = format!("http://127.0.0.1:{port}");

    // Traffic for the whole run: a connected user and a room member get a
    // push each every 100 ms, so rates and latency histograms move.
    let logic = cluster.logic_url();
    let _ = courier_client::register(&logic, "alice", PASSWORD).await;
    let mut config = courier_client::ClientConfig::new(logic.clone(), "alice", PASSWORD);
    config.rooms = vec!["watch".into()];
    let (_alice, _events) = courier_client::Client::connect(config)
        .await
        .expect("alice connects");
    let traffic = tokio::spawn({
        let logic = logic.clone();
        async move {
            let http = reqwest::Client::new();
            // Bounded: longer than every query may wait.
            for n in 0..3_000u32 {
                let pushes = [
                    ("/api/v1/push/users", json!({"uids": ["alice"], "data": n})),
                    ("/api/v1/push/rooms/watch", json!({"data": n})),
                ];
                for (path, body) in pushes {
                    let _ = http
                        .post(format!("{logic}{path}"))
                        .bearer_auth(API_KEY)
                        .json(&body)
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // The rules as Prometheus loaded them.
    let groups =
        courier_testkit::until_some("prometheus to load the rules", QUERY_DEADLINE, || {
            let base = base.clone();
            async move {
                let reply = reqwest::get(format!("{base}/api/v1/rules")).await.ok()?;
                let data: Value = reply.json().await.ok()?;
                let groups = data["data"]["groups"].as_array()?.clone();
                (!groups.is_empty()).then_some(groups)
            }
        })
        .await;
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .collect();
    assert_eq!(rules.len(), 15, "every rule of courier-rules.yml loaded");
    let mut queries = dashboard_queries();
    for rule in &rules {
        let query = rule["query"].as_str().unwrap();
        queries.push(match rule["type"].as_str() {
            Some("alerting") => without_threshold(query),
            _ => query.to_owned(),
        });
    }

    for query in &queries {
        courier_testkit::eventually_async(&format!("data for `{query}`"), QUERY_DEADLINE, || {
            let base = base.clone();
            async move {
                let data = api(&base, "query", &[("query", query)]).await;
                data["result"].as_array().is_some_and(|r| !r.is_empty())
            }
        })
        .await;
    }

    // A healthy, delivering cluster fires nothing.
    let alerts = api(&base, "alerts", &[]).await;
    let firing: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(firing.is_empty(), "{firing:?}");
    traffic.abort();
}

#[test]
fn thresholds_come_off_alert_queries() {
    assert_eq!(without_threshold("up{job=~\"x\"} == 0"), "up{job=~\"x\"}");
    assert_eq!(without_threshold("a:b > 0.25"), "a:b");
    assert_eq!(without_threshold("rate(x[5m])"), "rate(x[5m])");
}
