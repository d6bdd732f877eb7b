//! `courier bench push`: the HTTP push API under load.
//!
//! `--concurrency` connections each send one push at a time, back to back
//! (closed loop), to users kept online by SDK clients in this process, so
//! every push is stored, published and delivered. It reports requests/s and
//! the latency of each request (sent to 202). `--ceiling` instead sends the
//! same number of `GET /healthz` to the same logic: what an empty route
//! answers on the same box, the bound the push route is measured against.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use courier_client::Client;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::latency::Latency;

/// Flags of `courier bench push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub logic: super::trust::LogicTarget,
    /// Requests to send.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Online users the pushes go to, round robin.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// Bytes of each push's `data` (a JSON string).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Pushes per request through `POST /push/batch` (0: one push per
    /// request through `POST /push/users`).
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Measure `GET /healthz` instead: the empty-route ceiling.
    #[arg(long)]
    pub ceiling: bool,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Serialize)]
struct Report {
    route: &'static str,
    requests: u64,
    concurrency: usize,
    secs: f64,
    requests_per_sec: f64,
    /// Pushes made (`requests` × `--batch` with a batch).
    pushes: u64,
    pushes_per_sec: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    max_ms: Option<f64>,
    statuses: BTreeMap<String, u64>,
}

/// Runs the push benchmark and prints its report.
pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    if args.requests == 0 || args.concurrency == 0 || args.users == 0 {
        bail!("--requests, --concurrency and --users must be positive");
    }
    if args.batch > 500 {
        bail!("--batch is at most 500 (the server's limit)");
    }
    let mut clients = Vec::new();
    let mut uids = Vec::new();
    if !args.ceiling {
        for i in 0..args.users {
            let uid = format!("bench-push-{i}");
            let password = "bench-push-password";
            let config = super::trust::client_config(
                &args.logic.server,
                &uid,
                password,
                args.logic.ca.as_deref(),
            )?;
            let _ = courier_client::register_with(&config).await;
            let (client, mut events) = Client::connect(config)
                .await
                .with_context(|| format!("connecting {uid}"))?;
            // Keep reading, so the comet never drops a slow consumer.
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            clients.push(client);
            uids.push(uid);
        }
    }
    let data = serde_json::to_string(&"x".repeat(args.payload.saturating_sub(2)))?;
    let http = super::trust::http(args.logic.ca.as_deref())?
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .build()?;
    let latency = Arc::new(Mutex::new(Latency::new()));
    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let batched = args.batch > 0 && !args.ceiling;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.requests {
        let permit = slots.clone().acquire_owned().await?;
        let request = if args.ceiling {
            http.get(format!("{}/healthz", args.logic.server))
        } else if args.batch > 0 {
            let pushes: Vec<String> = (0..args.batch)
                .map(|i| {
                    let uid = &uids[(n as usize * args.batch + i) % uids.len()];
                    format!(r#"{{"to":{{"users":["{uid}"]}},"op":1001,"data":{data}}}"#)
                })
                .collect();
            http.post(format!("{}/api/v1/push/batch", args.logic.server))
                .bearer_auth(&args.logic.api_key)
                .header("content-type", "application/json")
                .body(format!(r#"{{"pushes":[{}]}}"#, pushes.join(",")))
        } else {
            let uid = &uids[(n as usize) % uids.len()];
            let body = format!(r#"{{"uids":["{uid}"],"op":1001,"data":{data}}}"#);
            http.post(format!("{}/api/v1/push/users", args.logic.server))
                .bearer_auth(&args.logic.api_key)
                .header("content-type", "application/json")
                .body(body)
        };
        let (latency, statuses) = (latency.clone(), statuses.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            // A batch counts each push's own status.
            let counted: Vec<String> = match request.timeout(Duration::from_secs(10)).send().await {
                Ok(reply) => {
                    let status = reply.status().as_u16().to_string();
                    let body = reply.bytes().await.unwrap_or_default();
                    match batched {
                        true => item_statuses(&body).unwrap_or_else(|| vec![status]),
                        false => vec![status],
                    }
                }
                Err(e) if e.is_timeout() => vec!["timeout".to_owned()],
                Err(_) => vec!["error".to_owned()],
            };
            latency
                .lock()
                .record_us(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            let mut statuses = statuses.lock();
            for status in counted {
                *statuses.entry(status).or_default() += 1;
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let latency = latency.lock().clone();
    let pushes = match batched {
        true => args.requests * args.batch as u64,
        false => args.requests,
    };
    let report = Report {
        route: if args.ceiling {
            "GET /healthz"
        } else if batched {
            "POST /api/v1/push/batch"
        } else {
            "POST /api/v1/push/users"
        },
        requests: args.requests,
        concurrency: args.concurrency,
        secs,
        requests_per_sec: args.requests as f64 / secs.max(1e-9),
        pushes,
        pushes_per_sec: pushes as f64 / secs.max(1e-9),
        p50_ms: latency.quantile_ms(0.50),
        p99_ms: latency.quantile_ms(0.99),
        p999_ms: latency.quantile_ms(0.999),
        max_ms: latency.max_ms(),
        statuses: statuses.lock().clone(),
    };
    for client in clients {
        client.close().await;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        println!("route            {}", report.route);
        println!(
            "requests         {} ({} in flight)",
            report.requests, report.concurrency
        );
        println!("requests/s       {:.0}", report.requests_per_sec);
        if batched {
            println!(
                "pushes/s         {:.0} ({} a request)",
                report.pushes_per_sec, args.batch
            );
        }
        println!(
            "latency ms       p50 {}  p99 {}  p99.9 {}  max {}",
            ms(report.p50_ms),
            ms(report.p99_ms),
            ms(report.p999_ms),
            ms(report.max_ms)
        );
        println!("statuses         {:?}", report.statuses);
    }
    Ok(())
}

/// The `status` of each result of a `POST /push/batch` reply.
fn item_statuses(body: &[u8]) -> Option<Vec<String>> {
    let reply: serde_json::Value = serde_json::from_slice(body).ok()?;
    reply["results"]
        .as_array()?
        .iter()
        .map(|r| r["status"].as_u64().map(|s| s.to_string()))
        .collect()
}
