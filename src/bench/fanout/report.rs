//! The fan-out bench's numbers: one struct, printed as a table or as one
//! JSON object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::bench::latency::Latency;

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FanoutReport {
    pub(crate) room: String,
    /// Members asked for.
    pub(crate) members: u64,
    /// Members that authenticated.
    pub(crate) connected: u64,
    pub(crate) procs: u32,
    pub(crate) pushes: u64,
    /// Pushes logic answered `202` to.
    pub(crate) pushes_accepted: u64,
    /// Offered pushes per second (0 = unlimited).
    pub(crate) rate: u64,
    /// Achieved pushes per second, first send to last.
    pub(crate) send_rate: f64,
    /// Bytes of each push's `data`.
    pub(crate) payload: usize,
    /// Connected members × accepted pushes.
    pub(crate) deliveries_expected: u64,
    pub(crate) deliveries_received: u64,
    /// Members that got every accepted push.
    pub(crate) members_complete: u64,
    /// First push sent -> last delivery, in seconds.
    pub(crate) duration_secs: f64,
    pub(crate) deliveries_per_sec: f64,
    pub(crate) latency: LatencySummary,
    pub(crate) connect: ConnectSummary,
    /// Push requests not accepted, by status or error.
    pub(crate) push_errors: BTreeMap<String, u64>,
    /// Live members the comet or the network closed early, by reason
    /// (`SLOW_CONSUMER`, `IDLE`, …).
    pub(crate) closed_early: BTreeMap<String, u64>,
    pub(crate) bad_frames: u64,
    pub(crate) unexpected_frames: u64,
    pub(crate) unreadable_samples: u64,
    /// The push timeout ran out before every member had every push.
    pub(crate) timed_out: bool,
    pub(crate) generator: CpuSummary,
    pub(crate) comets: Vec<CometSummary>,
}

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

/// The connect phase.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ConnectSummary {
    /// Connect + Auth -> AuthReply, per second over the whole phase.
    pub(crate) connections_per_sec: f64,
    pub(crate) secs: f64,
    /// Handshakes answered with an `Error` frame (retries included).
    pub(crate) refused_total: u64,
    pub(crate) refused: BTreeMap<String, u64>,
    /// Other failed attempts (connect errors, timeouts), retries included.
    pub(crate) failed_attempts: BTreeMap<String, u64>,
    /// Members that never connected.
    pub(crate) gave_up: u64,
    pub(crate) source_ips: u64,
}

/// The generator's own cost.
#[derive(Debug, Default, Serialize)]
pub(crate) struct CpuSummary {
    /// User + system seconds of the whole run, worker processes included.
    pub(crate) cpu_secs: f64,
    /// The same, from the first push to the end.
    pub(crate) push_phase_cpu_secs: f64,
    /// Push-phase CPU per delivery, µs.
    pub(crate) cpu_per_delivery_us: Option<f64>,
}

/// One comet process (`--comet-pid`), measured during the push phase.
#[derive(Debug, Default, Serialize)]
pub(crate) struct CometSummary {
    pub(crate) pid: u32,
    pub(crate) cpu_secs: f64,
    pub(crate) cpu_per_delivery_us: Option<f64>,
    pub(crate) rss_mib: f64,
    pub(crate) peak_rss_mib: f64,
    /// Why the numbers are missing, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// CPU seconds per delivery in µs, `None` without deliveries.
pub(crate) fn per_delivery_us(cpu_secs: f64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| cpu_secs * 1e6 / deliveries as f64)
}

impl FanoutReport {
    /// The human table.
    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} µs"));
        let map = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let rate = if self.rate == 0 {
            "max".to_owned()
        } else {
            format!("{}/s", self.rate)
        };
        let _ = writeln!(
            t,
            "room             {} ({} processes)",
            self.room, self.procs
        );
        let _ = writeln!(
            t,
            "members          {} connected of {} ({} source IPs)",
            self.connected, self.members, self.connect.source_ips
        );
        let _ = writeln!(
            t,
            "connect          {:.0} conn/s over {:.2} s; refused {} ({}); failed attempts {}; gave up {}",
            self.connect.connections_per_sec,
            self.connect.secs,
            self.connect.refused_total,
            map(&self.connect.refused),
            map(&self.connect.failed_attempts),
            self.connect.gave_up
        );
        let _ = writeln!(
            t,
            "pushes           {} accepted of {}, offered {rate}, sent at {:.0}/s, {} B data; errors: {}",
            self.pushes_accepted,
            self.pushes,
            self.send_rate,
            self.payload,
            map(&self.push_errors)
        );
        let _ = writeln!(
            t,
            "deliveries       {} of {} expected; {} members complete{}",
            self.deliveries_received,
            self.deliveries_expected,
            self.members_complete,
            if self.timed_out { " (TIMED OUT)" } else { "" }
        );
        let _ = writeln!(
            t,
            "throughput       {:.0} deliveries/s over {:.3} s (first push -> last delivery)",
            self.deliveries_per_sec, self.duration_secs
        );
        let _ = writeln!(
            t,
            "latency ms       p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            ms(self.latency.p999_ms),
            ms(self.latency.max_ms),
            self.latency.samples
        );
        let _ = writeln!(t, "closed early     {}", map(&self.closed_early));
        if self.bad_frames + self.unexpected_frames + self.unreadable_samples > 0 {
            let _ = writeln!(
                t,
                "odd frames       bad {}, unexpected {}, unreadable samples {}",
                self.bad_frames, self.unexpected_frames, self.unreadable_samples
            );
        }
        let _ = writeln!(
            t,
            "generator CPU    {:.2} s total, {:.2} s in push phase, {} per delivery",
            self.generator.cpu_secs,
            self.generator.push_phase_cpu_secs,
            us(self.generator.cpu_per_delivery_us)
        );
        for c in &self.comets {
            match &c.error {
                Some(e) => {
                    let _ = writeln!(t, "comet pid {:<7}{e}", c.pid);
                }
                None => {
                    let _ = writeln!(
                        t,
                        "comet pid {:<7}{:.2} s CPU in push phase, {} per delivery; RSS {:.1} MiB (peak {:.1})",
                        c.pid,
                        c.cpu_secs,
                        us(c.cpu_per_delivery_us),
                        c.rss_mib,
                        c.peak_rss_mib
                    );
                }
            }
        }
        t
    }
}
