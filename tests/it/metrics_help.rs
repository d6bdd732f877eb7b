//! Every metric a `courier` process renders is described: a `# HELP` line
//! for each `# TYPE`, `courier_build_info` with the version, and the
//! histograms rendered as Prometheus histograms (`_bucket{le=...}`), not
//! summaries, among them the push -> delivery latency and logic's HTTP
//! durations. And every metric the code emits has its description.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;

use courier_client::{Client, ClientConfig};
use courier_testkit::postgres::PostgresServer;
use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const API_KEY: &str = "metrics-help-test-key";

/// A `courier up` process and the addresses its banner printed.
struct Up {
    _child: Child,
    /// `http://host:port`
    logic: String,
    /// Logic's admin listener, `http://host:port`.
    logic_admin: String,
    /// Comet's and job's, `http://host:port`, each.
    admins: Vec<String>,
}

/// Starts `courier up` on port 0 everywhere, with `store` as its store of
/// record (memory sessions, queue and discovery).
async fn courier_up(store: &str) -> Up {
    let any = "127.0.0.1:0";
    let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["up", "--api-key", API_KEY])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "RUST_LOG",
            std::env::var("TEST_COURIER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("COURIER_CLUSTER__STORE", store)
        .env("COURIER_COMET__TCP_ADDR", any)
        .env("COURIER_COMET__WS_ADDR", any)
        .env("COURIER_COMET__GRPC_ADDR", any)
        .env("COURIER_COMET__ADMIN_ADDR", any)
        .env("COURIER_JOB__ADMIN_ADDR", any)
        .env("COURIER_LOGIC__HTTP_ADDR", any)
        .env("COURIER_LOGIC__GRPC_ADDR", any)
        .env("COURIER_LOGIC__ADMIN_ADDR", any)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn courier up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut logic = None;
    let mut logic_admin = None;
    let mut admins = Vec::new();
    let banner = async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.contains("Ctrl-C stops everything") {
                return;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["logic", "HTTP", url, ..] => {
                    logic = Some(url.trim_end_matches("/api/v1").to_owned());
                }
                ["logic", "admin", url, ..] => {
                    logic_admin = Some(url.trim_end_matches("/metrics").to_owned());
                }
                [_, _, "admin", url, ..] => {
                    admins.push(url.trim_end_matches("/metrics").to_owned());
                }
                _ => {}
            }
        }
        panic!("courier up exited before its banner ended");
    };
    tokio::time::timeout(DEADLINE * 3, banner)
        .await
        .expect("courier up printed its banner");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up {
        _child: child,
        logic: logic.expect("the banner names logic's HTTP address"),
        logic_admin: logic_admin.expect("the banner names logic's admin address"),
        admins,
    }
}

async fn scrape(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200, "{base}/metrics");
    resp.text().await.expect("a body")
}

/// Family name -> (TYPE, whether a HELP line precedes it).
fn families(text: &str) -> BTreeMap<String, (String, bool)> {
    let mut helped = BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!help.trim().is_empty(), "an empty HELP: {line}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            out.insert(name.to_owned(), (kind.to_owned(), helped.contains(name)));
        }
    }
    out
}

#[tokio::test]
async fn a_running_process_describes_every_metric_it_renders() {
    let postgres = PostgresServer::start().await.expect("postgres starts");
    let up = courier_up(&postgres.url()).await;
    assert_eq!(up.admins.len(), 2, "a comet's and a job's admin listener");

    // A connection and a push, so the comet, logic, job and store have
    // counted and measured something (the store commits the message).
    let _ = courier_client::register(&up.logic, "alice", PASSWORD).await;
    let config = ClientConfig::new(up.logic.clone(), "alice", PASSWORD);
    let (_alice, mut events) = Client::connect(config).await.expect("alice connects");
    let pushed = reqwest::Client::new()
        .post(format!("{}/api/v1/push/users", up.logic))
        .bearer_auth(API_KEY)
        .json(&json!({"uids": ["alice"], "data": "hi"}))
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status().as_u16(), 202, "{:?}", pushed.text().await);
    next_message_is(&mut events, br#""hi""#).await;

    // The job counts its push once the comet has answered it, which may
    // be after the client has the message.
    let text = courier_testkit::until_some("the job to count its push", DEADLINE, || async {
        let text = scrape(&up.logic_admin).await;
        text.contains("courier_job_pushes_total{").then_some(text)
    })
    .await;
    // Metrics are for operators: not on the public API.
    let public = reqwest::get(format!("{}/metrics", up.logic)).await.unwrap();
    assert_eq!(public.status().as_u16(), 404);
    // One registry per process: every listener renders the same families.
    for admin in &up.admins {
        let other = families(&scrape(admin).await);
        assert!(other.values().all(|(_, help)| *help), "{admin}: {other:?}");
    }
    let found = families(&text);
    let undescribed: Vec<&String> = found
        .iter()
        .filter(|(_, (_, help))| !help)
        .map(|(name, _)| name)
        .collect();
    assert!(
        undescribed.is_empty(),
        "no HELP for {undescribed:?}:\n{text}"
    );

    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!("courier_build_info{{version=\"{version}\"}} 1\n")),
        "{text}"
    );
    assert_eq!(found["courier_build_info"].0, "gauge");
    assert!(found.contains_key("courier_logic_messages_total"), "{text}");
    assert!(
        found.contains_key("courier_comet_connections_total"),
        "{text}"
    );
    assert!(found.contains_key("courier_job_pushes_total"), "{text}");

    for histogram in [
        "courier_comet_open_batch",
        "courier_store_batch_items",
        "courier_comet_delivery_latency_seconds",
        "courier_logic_http_request_duration_seconds",
        "courier_grpc_server_duration_seconds",
        "courier_store_commit_duration_seconds",
    ] {
        let kind = found.get(histogram).map(|(kind, _)| kind.as_str());
        assert_eq!(kind, Some("histogram"), "{histogram}:\n{text}");
        assert!(text.contains(&format!("{histogram}_bucket{{")), "{text}");
        assert!(!text.contains(&format!("{histogram}{{quantile")), "{text}");
    }
    assert!(
        text.contains("courier_comet_open_batch_bucket{le=\"1\"} 1\n"),
        "one handshake, one batch of one: {text}"
    );
    assert!(
        text.contains("courier_comet_open_batch_bucket{le=\"+Inf\"} 1\n"),
        "{text}"
    );
    // The push reached alice's comet once, with the latency buckets.
    assert!(
        text.contains("courier_comet_delivery_latency_seconds_bucket{le=\"0.0005\"} "),
        "{text}"
    );
    assert!(
        text.contains("courier_comet_delivery_latency_seconds_count 1\n"),
        "{text}"
    );
    // gRPC calls by method and code: the job's push reached the comet,
    // the comet opened alice's session with logic.
    for method in [
        "/courier.comet.Comet/PushKeys",
        "/courier.logic.Logic/OpenSessions",
    ] {
        let series = format!(
            "courier_grpc_server_duration_seconds_count{{method=\"{method}\",code=\"OK\"}}"
        );
        assert!(text.contains(&series), "{series}:\n{text}");
    }
    // Requests by route pattern and status.
    let push = "route=\"/api/v1/push/users\",status=\"202\"";
    assert!(
        text.contains(&format!(
            "courier_logic_http_request_duration_seconds_count{{{push}}} 1\n"
        )),
        "{text}"
    );
}

/// Emissions (`counter!`, `gauge!`, `histogram!`) and descriptions
/// (`describe_counter!`...) in the source: metric name -> kinds.
#[derive(Default)]
struct Source {
    emitted: BTreeMap<String, BTreeSet<&'static str>>,
    described: BTreeMap<String, BTreeSet<&'static str>>,
}

impl Source {
    fn read(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.read(&path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                self.scan(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    fn scan(&mut self, source: &str) {
        for kind in ["counter", "gauge", "histogram"] {
            let call = format!("{kind}!(");
            for (at, _) in source.match_indices(&call) {
                let Some(name) = quoted_name(&source[at + call.len()..]) else {
                    continue;
                };
                let described = source[..at].ends_with("describe_");
                let into = if described {
                    &mut self.described
                } else {
                    &mut self.emitted
                };
                into.entry(name).or_default().insert(kind);
            }
        }
    }
}

/// The `"courier_..."` literal that opens `args`, if it does.
fn quoted_name(args: &str) -> Option<String> {
    let rest = args.trim_start().strip_prefix('"')?;
    let name = &rest[..rest.find('"')?];
    name.starts_with("courier_").then(|| name.to_owned())
}

#[test]
fn every_metric_the_code_emits_is_described_as_what_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut source = Source::default();
    for dir in ["cluster", "comet", "logic", "job", "runtime"] {
        source.read(&root.join(dir).join("src"));
    }
    source.read(&root.join("src"));
    assert!(
        source.emitted.len() > 50,
        "found {:?}",
        source.emitted.keys()
    );
    assert_eq!(
        source.emitted, source.described,
        "every emitted metric is described once per kind, and nothing else"
    );
}
