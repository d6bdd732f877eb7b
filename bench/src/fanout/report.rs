//! The fan-out bench's numbers: one struct, printed as a table or as one
//! JSON object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use serde::Serialize;

use super::idle::IdleSummary;
use super::pusher::Sent;
use crate::latency::Latency;
use crate::members::{Connected, Outcome, Tally};
use crate::proc_stat::{self, CpuTimes, Memory};
use crate::summary::{per_delivery_us, tally, LatencySummary};

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
    /// The idle phase, when there was one (`--idle-secs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle: Option<IdleSummary>,
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

/// What a run measured, before it is summed up.
pub(crate) struct Measured<'a> {
    pub(crate) room: &'a str,
    pub(crate) members: u64,
    pub(crate) procs: u32,
    pub(crate) pushes: u64,
    pub(crate) rate: u64,
    pub(crate) payload: usize,
    pub(crate) source_ips: u64,
    /// Each process's connect phase.
    pub(crate) connects: &'a [Connected],
    pub(crate) sent: &'a Sent,
    /// Each process's members, once stopped.
    pub(crate) outcomes: &'a [Outcome],
    pub(crate) timed_out: bool,
    /// The generator's CPU seconds from the first push to the end.
    pub(crate) push_cpu: f64,
    pub(crate) comets: Vec<CometCpu>,
    pub(crate) idle: Option<IdleSummary>,
}

/// A comet's CPU before and after the push phase, and its memory after.
pub(crate) struct CometCpu {
    pub(crate) pid: u32,
    pub(crate) before: io::Result<CpuTimes>,
    pub(crate) after: io::Result<CpuTimes>,
    pub(crate) memory: io::Result<Memory>,
}

impl FanoutReport {
    /// Sums up what every process saw.
    pub(crate) fn new(m: Measured<'_>) -> Self {
        let mut latency = Latency::new();
        let mut tally = Tally::default();
        let (mut received, mut complete, mut last_delivery_us) = (0, 0, 0);
        for o in m.outcomes {
            latency.add_pairs(&o.latency);
            tally.merge(&o.tally);
            received += o.received;
            complete += o.complete;
            last_delivery_us = last_delivery_us.max(o.last_delivery_us);
        }
        let connected: u64 = m.connects.iter().map(|c| c.connected).sum();
        let started = m.connects.iter().map(|c| c.started_us).min().unwrap_or(0);
        let finished = m.connects.iter().map(|c| c.finished_us).max().unwrap_or(0);
        let connect_secs = finished.saturating_sub(started) as f64 / 1e6;
        let duration_secs = last_delivery_us.saturating_sub(m.sent.first_us) as f64 / 1e6;
        let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let attempted = m.sent.accepted + m.sent.rejected.values().sum::<u64>();
        Self {
            room: m.room.to_owned(),
            members: m.members,
            connected,
            procs: m.procs,
            pushes: m.pushes,
            pushes_accepted: m.sent.accepted,
            rate: m.rate,
            send_rate: m.sent.send_rate(attempted),
            payload: m.payload,
            deliveries_expected: connected * m.sent.accepted,
            deliveries_received: received,
            members_complete: complete,
            duration_secs,
            deliveries_per_sec: per_sec(received, duration_secs),
            latency: (&latency).into(),
            connect: ConnectSummary {
                connections_per_sec: per_sec(connected, connect_secs),
                secs: connect_secs,
                refused_total: tally.refused.values().sum(),
                refused: tally.refused.clone(),
                failed_attempts: tally.failed_attempts.clone(),
                gave_up: tally.gave_up,
                source_ips: m.source_ips,
            },
            push_errors: m.sent.rejected.clone(),
            closed_early: tally.closed.clone(),
            bad_frames: tally.bad_frames,
            unexpected_frames: tally.unexpected_frames,
            unreadable_samples: tally.unreadable_samples,
            timed_out: m.timed_out,
            generator: CpuSummary {
                // Workers have exited and been waited for by now.
                cpu_secs: proc_stat::cpu_times(None).map_or(0.0, |t| t.total()),
                push_phase_cpu_secs: m.push_cpu,
                cpu_per_delivery_us: per_delivery_us(m.push_cpu, received),
            },
            comets: m
                .comets
                .into_iter()
                .map(|c| CometSummary::new(c, received))
                .collect(),
            idle: m.idle,
        }
    }
}

impl CometSummary {
    fn new(c: CometCpu, deliveries: u64) -> Self {
        match (c.before, c.after, c.memory) {
            (Ok(before), Ok(after), Ok(memory)) => {
                let cpu = after.own - before.own;
                Self {
                    pid: c.pid,
                    cpu_secs: cpu,
                    cpu_per_delivery_us: per_delivery_us(cpu, deliveries),
                    rss_mib: memory.rss_kib as f64 / 1024.0,
                    peak_rss_mib: memory.peak_kib as f64 / 1024.0,
                    error: None,
                }
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Self {
                pid: c.pid,
                error: Some(format!("cannot read /proc/{}: {e}", c.pid)),
                ..Self::default()
            },
        }
    }
}

impl FanoutReport {
    /// The `bench conns` table: connections first.
    pub(crate) fn conns_table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "connections      {} authenticated of {} ({} processes, {} source IPs)",
            self.connected, self.members, self.procs, self.connect.source_ips
        );
        let _ = writeln!(
            t,
            "connect + auth   {:.0}/s over {:.2} s; refused {} ({}); failed attempts {}; gave up {}",
            self.connect.connections_per_sec,
            self.connect.secs,
            self.connect.refused_total,
            tally(&self.connect.refused),
            tally(&self.connect.failed_attempts),
            self.connect.gave_up
        );
        if let Some(idle) = &self.idle {
            t.push_str(&idle.table());
        }
        let _ = writeln!(
            t,
            "push to all      {} of {} connections got it{}; push errors: {}",
            self.members_complete,
            self.connected,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            tally(&self.push_errors)
        );
        let _ = writeln!(t, "closed early     {}", tally(&self.closed_early));
        t
    }

    /// The human table.
    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} µs"));
        let map = tally;
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
        if let Some(idle) = &self.idle {
            t.push_str(&idle.table());
        }
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
