//! Pieces of the benches' reports that every generator prints the same
//! way: sampled latency, CPU per delivery, and tallies by reason.

use std::collections::BTreeMap;

use serde::Serialize;

use super::latency::Latency;

/// Sampled delivery latency, send -> read, in ms.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) samples: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p999_ms: Option<f64>,
    pub(crate) max_ms: Option<f64>,
}

impl From<&Latency> for LatencySummary {
    fn from(l: &Latency) -> Self {
        Self {
            samples: l.len(),
            p50_ms: l.quantile_ms(0.50),
            p99_ms: l.quantile_ms(0.99),
            p999_ms: l.quantile_ms(0.999),
            max_ms: l.max_ms(),
        }
    }
}

/// CPU seconds per delivery in µs, `None` without deliveries.
pub(crate) fn per_delivery_us(cpu_secs: f64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| cpu_secs * 1e6 / deliveries as f64)
}

/// `"none"`, or `"KEY n, KEY n"`.
pub(crate) fn tally(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        "none".to_owned()
    } else {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
