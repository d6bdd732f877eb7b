//! `bench peer`'s numbers: one row per server, printed as a table or as one
//! JSON object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use serde::Serialize;

use super::publisher::Sent;
use super::subscribers::{Connected, Outcome};
use super::Kind;
use crate::proc_stat::{CpuTimes, Memory};
use crate::summary::{per_delivery_us, tally, LatencySummary};

/// Everything one `bench peer` run measured.
#[derive(Debug, Serialize)]
pub(crate) struct PeerReport {
    pub(crate) subscribers: u64,
    pub(crate) publishes: u64,
    /// Offered publishes per second (0 = unlimited).
    pub(crate) rate: u64,
    /// Bytes of each payload.
    pub(crate) payload: usize,
    pub(crate) sample_every: u64,
    pub(crate) targets: Vec<TargetReport>,
}

/// One server's run.
#[derive(Debug, Serialize)]
pub(crate) struct TargetReport {
    /// `nats` or `redis`.
    pub(crate) target: &'static str,
    /// What the server's `--version` says.
    pub(crate) server: String,
    pub(crate) server_pid: u32,
    /// Subscribers asked for.
    pub(crate) subscribers: u64,
    /// Subscribers whose subscription the server confirmed.
    pub(crate) connected: u64,
    /// First connect -> last subscription confirmed.
    pub(crate) connect_secs: f64,
    pub(crate) source_ips: u64,
    pub(crate) publishes: u64,
    /// Publishes the server took (see `Sent::published`).
    pub(crate) published: u64,
    /// Achieved publishes per second, first send to last.
    pub(crate) send_rate: f64,
    /// Redis: subscribers reached, summed over `PUBLISH` answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis_receivers: Option<u64>,
    pub(crate) publish_errors: BTreeMap<String, u64>,
    /// Connected subscribers × publishes taken.
    pub(crate) deliveries_expected: u64,
    pub(crate) deliveries_received: u64,
    /// Subscribers that got every publish.
    pub(crate) subscribers_complete: u64,
    /// First publish sent -> last delivery, in seconds.
    pub(crate) duration_secs: f64,
    pub(crate) deliveries_per_sec: f64,
    pub(crate) latency: LatencySummary,
    /// The server's CPU seconds from the first publish to the end.
    pub(crate) server_cpu_secs: Option<f64>,
    pub(crate) server_cpu_per_delivery_us: Option<f64>,
    pub(crate) server_rss_mib: Option<f64>,
    pub(crate) server_peak_rss_mib: Option<f64>,
    /// This process's CPU seconds from the first publish to the end.
    pub(crate) generator_cpu_secs: f64,
    pub(crate) generator_cpu_per_delivery_us: Option<f64>,
    /// Failed handshake attempts by reason, retries included.
    pub(crate) failed_attempts: BTreeMap<String, u64>,
    /// Subscribers that never subscribed.
    pub(crate) gave_up: u64,
    /// Subscribers the server or the network closed early, by reason.
    pub(crate) closed_early: BTreeMap<String, u64>,
    pub(crate) unreadable_samples: u64,
    /// The deadline came before every subscriber had every publish.
    pub(crate) timed_out: bool,
}

/// What one server's run measured, before it is summed up.
pub(crate) struct Measured {
    pub(crate) kind: Kind,
    pub(crate) server: String,
    pub(crate) server_pid: u32,
    pub(crate) subscribers: u64,
    pub(crate) source_ips: u64,
    pub(crate) publishes: u64,
    pub(crate) connected: Connected,
    pub(crate) sent: Sent,
    pub(crate) outcome: Outcome,
    pub(crate) timed_out: bool,
    pub(crate) server_before: io::Result<CpuTimes>,
    pub(crate) server_after: io::Result<CpuTimes>,
    pub(crate) server_memory: io::Result<Memory>,
    pub(crate) generator_cpu_secs: f64,
}

impl TargetReport {
    /// Sums up one server's run.
    pub(crate) fn new(m: Measured) -> Self {
        let received = m.outcome.received;
        let duration_secs = m.outcome.last_delivery_us.saturating_sub(m.sent.first_us) as f64 / 1e6;
        let server_cpu = match (&m.server_before, &m.server_after) {
            (Ok(before), Ok(after)) => Some(after.own - before.own),
            _ => None,
        };
        let memory = m.server_memory.as_ref().ok();
        let mib = |kib: u64| kib as f64 / 1024.0;
        Self {
            target: m.kind.name(),
            server: m.server,
            server_pid: m.server_pid,
            subscribers: m.subscribers,
            connected: m.connected.connected,
            connect_secs: m.connected.secs,
            source_ips: m.source_ips,
            publishes: m.publishes,
            published: m.sent.published,
            send_rate: m.sent.send_rate(),
            redis_receivers: m.sent.receivers,
            publish_errors: m.sent.errors.clone(),
            deliveries_expected: m.connected.connected * m.sent.published,
            deliveries_received: received,
            subscribers_complete: m.outcome.complete,
            duration_secs,
            deliveries_per_sec: if duration_secs > 0.0 {
                received as f64 / duration_secs
            } else {
                0.0
            },
            latency: (&m.outcome.latency).into(),
            server_cpu_secs: server_cpu,
            server_cpu_per_delivery_us: server_cpu.and_then(|c| per_delivery_us(c, received)),
            server_rss_mib: memory.map(|m| mib(m.rss_kib)),
            server_peak_rss_mib: memory.map(|m| mib(m.peak_kib)),
            generator_cpu_secs: m.generator_cpu_secs,
            generator_cpu_per_delivery_us: per_delivery_us(m.generator_cpu_secs, received),
            failed_attempts: m.outcome.tally.failed_attempts.clone(),
            gave_up: m.outcome.tally.gave_up,
            closed_early: m.outcome.tally.closed.clone(),
            unreadable_samples: m.outcome.tally.unreadable_samples,
            timed_out: m.timed_out,
        }
    }
}

impl PeerReport {
    /// The human table: one row per server, then what each row leaves out.
    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let rate = if self.rate == 0 {
            "max".to_owned()
        } else {
            format!("{}/s", self.rate)
        };
        let _ = writeln!(
            t,
            "bench peer: {} subscribers, {} publishes offered at {rate}, {} B payload, latency from every {}th subscriber",
            self.subscribers, self.publishes, self.payload, self.sample_every
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        let header = [
            "target",
            "subscribers",
            "publishes (sent/s)",
            "deliveries received/expected",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "server CPU s",
            "server µs/deliv",
            "server RSS MiB",
            "gen CPU s",
            "gen µs/deliv",
        ];
        let rows: Vec<Vec<String>> = self
            .targets
            .iter()
            .map(|r| {
                vec![
                    r.target.to_owned(),
                    format!("{}/{}", r.connected, r.subscribers),
                    format!("{} ({:.0}/s)", r.published, r.send_rate),
                    format!(
                        "{}/{}{}",
                        r.deliveries_received,
                        r.deliveries_expected,
                        if r.timed_out { " TIMED OUT" } else { "" }
                    ),
                    format!("{:.0}", r.deliveries_per_sec),
                    opt(r.latency.p50_ms, 2),
                    opt(r.latency.p99_ms, 2),
                    opt(r.latency.p999_ms, 2),
                    opt(r.server_cpu_secs, 2),
                    opt(r.server_cpu_per_delivery_us, 3),
                    opt(r.server_rss_mib, 1),
                    format!("{:.2}", r.generator_cpu_secs),
                    opt(r.generator_cpu_per_delivery_us, 3),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                rows.iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .chain(header.get(c).map(|h| h.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut l = String::new();
            for (c, (cell, width)) in cells.zip(&widths).enumerate() {
                let pad = width.saturating_sub(cell.chars().count());
                if c > 0 {
                    l.push_str("  ");
                }
                if c == 0 {
                    l.push_str(cell);
                    l.extend(std::iter::repeat_n(' ', pad));
                } else {
                    l.extend(std::iter::repeat_n(' ', pad));
                    l.push_str(cell);
                }
            }
            l.trim_end().to_owned()
        };
        let _ = writeln!(t, "{}", line(&mut header.iter().copied()));
        for r in &rows {
            let _ = writeln!(t, "{}", line(&mut r.iter().map(String::as_str)));
        }
        for r in &self.targets {
            let _ = writeln!(
                t,
                "{}: {} (pid {}); subscribed {} in {:.2} s from {} source IPs; latency max {} ms over {} samples",
                r.target,
                r.server,
                r.server_pid,
                r.connected,
                r.connect_secs,
                r.source_ips,
                opt(r.latency.max_ms, 2),
                r.latency.samples
            );
            if let Some(receivers) = r.redis_receivers {
                let _ = writeln!(
                    t,
                    "{}: PUBLISH answers counted {receivers} receivers in all",
                    r.target
                );
            }
            let odd = [
                (
                    "publish errors",
                    tally(&r.publish_errors),
                    !r.publish_errors.is_empty(),
                ),
                (
                    "failed handshakes",
                    tally(&r.failed_attempts),
                    !r.failed_attempts.is_empty(),
                ),
                ("never subscribed", r.gave_up.to_string(), r.gave_up > 0),
                (
                    "closed early",
                    tally(&r.closed_early),
                    !r.closed_early.is_empty(),
                ),
                (
                    "unreadable samples",
                    r.unreadable_samples.to_string(),
                    r.unreadable_samples > 0,
                ),
            ];
            for (what, value, shown) in odd {
                if shown {
                    let _ = writeln!(t, "{}: {what}: {value}", r.target);
                }
            }
        }
        t
    }
}
