//! Tracing and metrics installation: the binary's job alone. Libraries emit
//! `tracing` events and `metrics` counters and never install anything; the
//! operations listeners render `/metrics` through the renderer handed to
//! [`courier_runtime::admin::render_metrics_with`] here.
//!
//! Installing also describes every metric of every service (HELP text and
//! unit), whichever services this process runs, sets `courier_build_info`,
//! and gives histograms Prometheus buckets: durations (`*_seconds`) from
//! 0.5 ms to 10 s, batch sizes in powers of two.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

/// How often histogram samples are folded into their buckets, so memory
/// stays bounded even when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Bucket bounds of every duration histogram (`*_seconds`), in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of the batch size histograms (items per batch).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The histograms of batch sizes, which get [`BATCH_BUCKETS`].
const BATCH_HISTOGRAMS: &[&str] = &["courier_store_batch_items", "courier_comet_open_batch"];

/// Installs the global tracing subscriber, writing to standard error in
/// `config`'s format. `RUST_LOG` overrides its filter.
pub fn init_tracing(config: &crate::config::LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .flatten_event(false)
            .try_init(),
        crate::config::LogFormat::Text => builder
            // Colour codes only for a terminal, not into a log file.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Installs the Prometheus recorder, starts a small upkeep thread and makes
/// every operations listener of this process render it. Once per process:
/// later calls return the first call's answer. `false` when another
/// recorder was already installed (then `/metrics` answers 404).
pub fn install_metrics() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(install_prometheus)
}

/// The recorder's configuration: histogram buckets by metric name.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?;
    for name in BATCH_HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).into()), BATCH_BUCKETS)?;
    }
    Ok(builder)
}

fn install_prometheus() -> bool {
    let builder = match builder() {
        Ok(builder) => builder,
        Err(e) => {
            tracing::warn!(error = %e, "bad histogram buckets; histograms render as summaries");
            PrometheusBuilder::new()
        }
    };
    let Ok(handle) = builder.install_recorder() else {
        return false;
    };
    describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
    }
    courier_runtime::admin::render_metrics_with(move || handle.render())
}

/// Describes every service's metrics to the installed recorder and sets
/// `courier_build_info`.
fn describe() {
    courier_runtime::grpc_metrics::describe_metrics();
    courier_cluster::describe_metrics();
    courier_comet::describe_metrics();
    courier_logic::describe_metrics();
    courier_job::describe_metrics();
    metrics::describe_gauge!(
        "courier_build_info",
        metrics::Unit::Count,
        "Always 1; its version label is the running courier's version."
    );
    metrics::gauge!("courier_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
