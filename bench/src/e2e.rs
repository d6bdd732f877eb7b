//! `courier bench`: load generators whose numbers go in the README.
//!
//! `e2e` measures push -> receipt latency through a running system: one SDK
//! client listens, and HTTP pushes addressed to it are sent with a bounded
//! number in flight. Latency is from just before the HTTP request is sent to
//! the moment the client's SDK hands the message over.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use courier_client::{Client, Event};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::latency::Latency;
use super::summary::{tally, LatencySummary};

/// Flags of `courier bench e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub logic: super::trust::LogicTarget,
    /// Pushes to send.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Pushes started per second (open loop); 0 = as fast as `concurrency`
    /// allows, which measures a backlog rather than latency.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Give up waiting for receipts after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `courier bench e2e` measured.
#[derive(Debug, Serialize)]
struct Report {
    /// Pushes started per second; 0 = as fast as `concurrency` allows.
    rate: u64,
    concurrency: usize,
    pushes: usize,
    /// Pushes not answered 202, by status (or "error").
    push_errors: BTreeMap<String, u64>,
    received: u64,
    secs: f64,
    received_per_sec: f64,
    /// Push sent -> message handed over by the SDK.
    latency: LatencySummary,
    p90_ms: Option<f64>,
    /// The SDK's other events meanwhile, by kind (reconnects, gaps, resets).
    events: BTreeMap<&'static str, u64>,
    /// Seq ranges the SDK reported lost (`Gap`: they left the inbox's
    /// window before it read them).
    gaps: Vec<[u64; 2]>,
    /// The first pushes (by index) that were accepted but never received.
    missing: Vec<u64>,
}

/// Runs the end-to-end latency benchmark and prints its report.
pub async fn e2e(args: E2eArgs) -> anyhow::Result<()> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be positive");
    }
    let user = format!("bench-{:08x}", rand::random::<u32>());
    let password = "bench-password";
    let config = super::trust::client_config(
        &args.logic.server,
        &user,
        password,
        args.logic.ca.as_deref(),
    )?;
    courier_client::register_with(&config)
        .await
        .context("registering the bench user")?;
    let (client, mut events) = Client::connect(config)
        .await
        .context("connecting the bench client")?;

    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let push_errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let http = super::trust::http(args.logic.ca.as_deref())?.build()?;
    let url = format!("{}/api/v1/push/users", args.logic.server);
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();

    let producer = {
        let (sent, push_errors, permits, user, key) = (
            sent.clone(),
            push_errors.clone(),
            permits.clone(),
            user.clone(),
            args.logic.api_key,
        );
        let rate = args.rate;
        tokio::spawn(async move {
            let mut ticker = (rate > 0).then(|| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            for i in 0..args.count as u64 {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let permit = permits.clone().acquire_owned().await?;
                let body = serde_json::json!({"uids": [user], "op": 1, "data": i});
                sent.lock().insert(i, Instant::now());
                let req = http.post(&url).bearer_auth(&key).json(&body);
                let push_errors = push_errors.clone();
                tokio::spawn(async move {
                    let failure = match req.send().await {
                        Ok(r) if r.status().as_u16() == 202 => None,
                        Ok(r) => Some(r.status().as_u16().to_string()),
                        Err(_) => Some("error".to_owned()),
                    };
                    if let Some(reason) = failure {
                        *push_errors.lock().entry(reason).or_default() += 1;
                    }
                    drop(permit);
                });
            }
            anyhow::Ok(())
        })
    };

    let mut latency = Latency::new();
    let mut events_seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut gaps: Vec<[u64; 2]> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while latency.len() < args.count as u64 {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("client closed"),
            Err(_) => break,
        };
        let kind = match &event {
            Event::Message(_) => None,
            Event::Connected { .. } => Some("connected"),
            Event::Disconnected { .. } => Some("disconnected"),
            Event::Gap { .. } => Some("gap"),
            Event::Reset { .. } => Some("reset"),
            Event::Missed { .. } => Some("missed"),
            _ => Some("other"),
        };
        if let Some(kind) = kind {
            *events_seen.entry(kind).or_default() += 1;
        }
        if let Event::Gap {
            from_seq, to_seq, ..
        } = &event
        {
            gaps.push([*from_seq, *to_seq]);
        }
        if let Event::Message(m) = event {
            let now = Instant::now();
            let Ok(i) = std::str::from_utf8(&m.data).unwrap_or("").parse::<u64>() else {
                continue;
            };
            if let Some(t) = sent.lock().remove(&i) {
                let us = u64::try_from((now - t).as_micros()).unwrap_or(u64::MAX);
                latency.record_us(us);
            }
        }
    }
    let elapsed = started.elapsed();
    producer.await??;
    client.close().await;
    let received = latency.len();
    let mut missing: Vec<u64> = sent.lock().keys().copied().collect();
    missing.sort_unstable();
    missing.truncate(20);
    let report = Report {
        rate: args.rate,
        concurrency: args.concurrency,
        pushes: args.count,
        push_errors: push_errors.lock().clone(),
        received,
        secs: elapsed.as_secs_f64(),
        received_per_sec: received as f64 / elapsed.as_secs_f64(),
        latency: LatencySummary::from(&latency),
        p90_ms: latency.quantile_ms(0.90),
        events: events_seen,
        gaps,
        missing,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    let offered = match r.rate {
        0 => "max".to_owned(),
        rate => rate.to_string(),
    };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    println!(
        "offered          {offered} pushes/s, {} in flight at most",
        r.concurrency
    );
    println!(
        "pushes sent      {}; not accepted: {}",
        r.pushes,
        tally(&r.push_errors)
    );
    println!("received         {}", r.received);
    if !r.missing.is_empty() {
        println!(
            "never received   {:?}{}",
            r.missing,
            if r.pushes as u64 - r.received > 20 {
                " …"
            } else {
                ""
            }
        );
    }
    if !r.events.is_empty() {
        println!("SDK events       {:?}", r.events);
    }
    for [from, to] in &r.gaps {
        println!("lost (Gap)       seq {from}..={to}");
    }
    println!("throughput       {:.0} msg/s", r.received_per_sec);
    println!(
        "latency ms       p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(r.latency.p50_ms),
        ms(r.p90_ms),
        ms(r.latency.p99_ms),
        ms(r.latency.p999_ms),
        ms(r.latency.max_ms)
    );
}
