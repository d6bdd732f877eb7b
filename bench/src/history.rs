//! `courier bench history`: paging back through a long stored history.
//!
//! One user gets `--messages` pushes over HTTP (`--in-flight` at once),
//! then one SDK client of that user pages back from the newest message to
//! the first, `--page` at a time, one page in flight (as a person
//! scrolling up would), and reports pages/s and messages/s. With the
//! PostgreSQL store the pages come from a standby within the lag bound
//! (see logic's `courier_store_page_reads_total`); every message is
//! checked to arrive once, in order.

use std::sync::Arc;

use anyhow::{bail, Context};
use courier_client::{Client, Position};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::latency::Latency;

/// Flags of `courier bench history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub logic: super::trust::LogicTarget,
    /// Messages stored before paging back.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Messages per page (the comet serves at most 500).
    #[arg(long, default_value_t = 100)]
    pub page: u32,
    /// Pushes in flight while storing.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// The user whose inbox is filled (a fresh one by default).
    #[arg(long)]
    pub user: Option<String>,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Serialize)]
struct Report {
    messages: u64,
    page: u32,
    store_secs: f64,
    pushes_per_sec: f64,
    pages: u64,
    page_secs: f64,
    pages_per_sec: f64,
    messages_per_sec: f64,
    page_p50_ms: Option<f64>,
    page_p99_ms: Option<f64>,
}

/// Runs the history benchmark and prints its report.
pub async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    if args.messages == 0 || args.page == 0 || args.in_flight == 0 {
        bail!("--messages, --page and --in-flight must be positive");
    }
    let uid = args
        .user
        .clone()
        .unwrap_or_else(|| format!("bench-history-{:08x}", rand::random::<u32>()));
    let password = "bench-history-password";
    let config =
        super::trust::client_config(&args.logic.server, &uid, password, args.logic.ca.as_deref())?;
    let _ = courier_client::register_with(&config).await;

    // Store the history.
    let http = super::trust::http(args.logic.ca.as_deref())?
        .tcp_nodelay(true)
        .build()?;
    let slots = Arc::new(Semaphore::new(args.in_flight));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.messages {
        let permit = slots.clone().acquire_owned().await?;
        let request = http
            .post(format!("{}/api/v1/push/users", args.logic.server))
            .bearer_auth(&args.logic.api_key)
            .header("content-type", "application/json")
            .body(format!(r#"{{"uids":["{uid}"],"op":1001,"data":{n}}}"#));
        tasks.spawn(async move {
            let ok = request
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 202);
            drop(permit);
            ok
        });
        while let Some(done) = tasks.try_join_next() {
            if !done.unwrap_or(false) {
                bail!("a push was refused while storing the history");
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if !done.unwrap_or(false) {
            bail!("a push was refused while storing the history");
        }
    }
    let store_secs = started.elapsed().as_secs_f64();

    // Page it back.
    let (client, mut events) = Client::connect(config)
        .await
        .with_context(|| format!("connecting {uid}"))?;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let mut latency = Latency::new();
    let mut before = Position::NONE;
    let mut expected = None;
    let mut pages = 0u64;
    let started = Instant::now();
    loop {
        let asked = Instant::now();
        let page = client
            .history_before(None, before, args.page)
            .await
            .context("reading a page back")?;
        latency.record_us(u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX));
        pages += 1;
        // Each page ends right below the one before it.
        for m in page.messages.iter().rev() {
            let want = expected.unwrap_or(m.seq);
            if m.seq != want {
                bail!("page {pages}: seq {} where {want} was due", m.seq);
            }
            expected = Some(m.seq.saturating_sub(1));
        }
        match page.older() {
            Some(older) => before = older,
            None => break,
        }
    }
    let page_secs = started.elapsed().as_secs_f64();
    client.close().await;
    if expected != Some(0) {
        bail!("paging back stopped before the first message (next due {expected:?})");
    }
    let report = Report {
        messages: args.messages,
        page: args.page,
        store_secs,
        pushes_per_sec: args.messages as f64 / store_secs.max(1e-9),
        pages,
        page_secs,
        pages_per_sec: pages as f64 / page_secs.max(1e-9),
        messages_per_sec: args.messages as f64 / page_secs.max(1e-9),
        page_p50_ms: latency.quantile_ms(0.50),
        page_p99_ms: latency.quantile_ms(0.99),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        println!(
            "stored           {} messages in {:.1} s ({:.0} pushes/s)",
            report.messages, report.store_secs, report.pushes_per_sec
        );
        println!(
            "paged back       {} pages of {} in {:.2} s",
            report.pages, report.page, report.page_secs
        );
        println!(
            "pages/s          {:.0} ({:.0} messages/s)",
            report.pages_per_sec, report.messages_per_sec
        );
        println!(
            "page latency ms  p50 {}  p99 {}",
            ms(report.page_p50_ms),
            ms(report.page_p99_ms)
        );
    }
    Ok(())
}
