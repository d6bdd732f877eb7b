//! `courier bench`: load generators whose numbers go in the README.
//!
//! `e2e` measures push -> receipt latency through a running system: one SDK
//! client listens, and HTTP pushes addressed to it are sent with a bounded
//! number in flight. Latency is from just before the HTTP request is sent to
//! the moment the client's SDK hands the message over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use courier_client::{Client, Event};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

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
}

/// Runs the end-to-end latency benchmark and prints its report.
pub async fn e2e(args: E2eArgs) -> anyhow::Result<()> {
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be positive");
    }
    let user = format!(
        "bench-{}",
        crate::config::generate_secret().get(..8).unwrap_or("x")
    );
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
    let http = super::trust::http(args.logic.ca.as_deref())?.build()?;
    let url = format!("{}/api/v1/push/users", args.logic.server);
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();

    let producer = {
        let (sent, permits, user, key) = (
            sent.clone(),
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
                tokio::spawn(async move {
                    match req.send().await {
                        Ok(r) if r.status().as_u16() == 202 => {}
                        Ok(r) => eprintln!("push {i}: HTTP {}", r.status()),
                        Err(e) => eprintln!("push {i}: {e}"),
                    }
                    drop(permit);
                });
            }
            anyhow::Ok(())
        })
    };

    let mut latencies = Vec::with_capacity(args.count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while latencies.len() < args.count {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("client closed"),
            Err(_) => break,
        };
        if let Event::Message(m) = event {
            let now = Instant::now();
            let Ok(i) = std::str::from_utf8(&m.data).unwrap_or("").parse::<u64>() else {
                continue;
            };
            if let Some(t) = sent.lock().remove(&i) {
                latencies.push(now - t);
            }
        }
    }
    let elapsed = started.elapsed();
    producer.await??;
    client.close().await;
    println!(
        "offered          {} pushes/s, {} in flight at most",
        if args.rate == 0 {
            "max".to_string()
        } else {
            args.rate.to_string()
        },
        args.concurrency
    );
    report(&latencies, args.count, elapsed);
    Ok(())
}

fn report(latencies: &[Duration], count: usize, elapsed: Duration) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let pct = |p: f64| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[idx].as_secs_f64() * 1000.0
    };
    println!("pushes sent      {count}");
    println!("received         {}", sorted.len());
    println!(
        "throughput       {:.0} msg/s",
        sorted.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}
