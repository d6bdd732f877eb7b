//! Tracing and metrics setup. Only the binary calls the installers:
//! libraries emit `tracing` events and `metrics` counters, never install
//! anything, and read the recorder's handle through [`metrics_handle`] to
//! serve `/metrics`.
//!
//! The handle lives in a process-wide [`OnceLock`] because the recorder it
//! renders is process-wide too (`metrics` allows one global recorder), so
//! every service of one process (`courier up`) serves the same text.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How often histogram samples are folded into their summaries, so memory
/// stays bounded even when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The installed recorder's handle; `None` inside when installing failed
/// because another recorder was already global.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global tracing subscriber. `RUST_LOG` overrides `default`.
pub fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the Prometheus recorder (once per process; later calls return
/// the same handle) and starts a small upkeep thread. The handle renders
/// `/metrics`; it is also kept for [`metrics_handle`].
///
/// `None` when another, foreign recorder is already installed.
pub fn install_metrics() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
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
            Some(handle)
        })
        .clone()
}

/// The handle installed by [`install_metrics`], if it was called and
/// succeeded.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}
