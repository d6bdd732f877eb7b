//! Tracing and metrics installation: the binary's job alone. Libraries emit
//! `tracing` events and `metrics` counters and never install anything; the
//! operations listeners render `/metrics` through the renderer handed to
//! [`courier_runtime::admin::render_metrics_with`] here.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

/// How often histogram samples are folded into their summaries, so memory
/// stays bounded even when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global tracing subscriber. `RUST_LOG` overrides `default`.
pub fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not into a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Installs the Prometheus recorder, starts a small upkeep thread and makes
/// every operations listener of this process render it. Once per process:
/// later calls return the first call's answer. `false` when another
/// recorder was already installed (then `/metrics` answers 404).
pub fn install_metrics() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(install_prometheus)
}

fn install_prometheus() -> bool {
    let Ok(handle) = PrometheusBuilder::new().install_recorder() else {
        return false;
    };
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
