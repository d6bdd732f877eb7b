//! The idle phase: what holding connections that do nothing costs.
//!
//! Between connecting and pushing, the members only heartbeat for
//! `--idle-secs`. Measured around that window: each comet's resident memory
//! (before anything connected, once connected, after the idle window) and
//! CPU, and the commands Redis processed and the CPU it used, from `INFO`
//! (`--redis`). Memory per connection is the growth since before the
//! connect phase over the connections that comet holds.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;

use crate::proc_stat::{self, Memory};

/// A comet's memory before the connect phase, and whose share of the
/// connections it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline {
    pub(crate) pid: u32,
    pub(crate) before: Option<Memory>,
}

/// What the idle phase measured.
#[derive(Debug, Default, Serialize)]
pub(crate) struct IdleSummary {
    pub(crate) secs: f64,
    /// Seconds between one member's heartbeats (0: the comet's default).
    pub(crate) heartbeat_secs: u32,
    pub(crate) redis: Option<RedisLoad>,
    pub(crate) comets: Vec<IdleComet>,
}

/// Redis while the members idled.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RedisLoad {
    pub(crate) commands_per_sec: f64,
    /// User + system CPU Redis used, as a share of one core.
    pub(crate) cpu_percent: f64,
}

/// One comet (`--comet-pid`) while its connections idled.
#[derive(Debug, Default, Serialize)]
pub(crate) struct IdleComet {
    pub(crate) pid: u32,
    /// Connections this comet was given (members are spread round-robin
    /// over `--comet` in order; pids are matched to them in order).
    pub(crate) connections: u64,
    pub(crate) rss_before_mib: f64,
    pub(crate) rss_connected_mib: f64,
    pub(crate) rss_idle_mib: f64,
    /// (RSS after the idle window − RSS before connecting) / connections.
    pub(crate) bytes_per_connection: Option<f64>,
    /// CPU during the idle window, as a share of one core.
    pub(crate) cpu_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl IdleSummary {
    /// The human lines.
    pub(crate) fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut t = String::new();
        let beat = match self.heartbeat_secs {
            0 => "the comet's interval".to_owned(),
            s => format!("every {s} s"),
        };
        let _ = writeln!(t, "idle             {:.1} s, heartbeats {beat}", self.secs);
        if let Some(r) = &self.redis {
            let _ = writeln!(
                t,
                "redis while idle {:.0} commands/s, {:.1}% CPU",
                r.commands_per_sec, r.cpu_percent
            );
        }
        for c in &self.comets {
            match (&c.error, c.bytes_per_connection) {
                (Some(e), _) => {
                    let _ = writeln!(t, "comet pid {:<7}{e}", c.pid);
                }
                (None, per) => {
                    let per = per.map_or("-".to_owned(), |b| format!("{:.2} KiB", b / 1024.0));
                    let _ = writeln!(
                        t,
                        "comet pid {:<7}{} conns: RSS {:.1} -> {:.1} (connected) -> {:.1} MiB (idle), {per}/conn; {:.1}% CPU idle",
                        c.pid,
                        c.connections,
                        c.rss_before_mib,
                        c.rss_connected_mib,
                        c.rss_idle_mib,
                        c.cpu_percent
                    );
                }
            }
        }
        t
    }
}

/// Reads every comet's memory now.
pub(crate) fn baselines(pids: &[u32]) -> Vec<Baseline> {
    pids.iter()
        .map(|&pid| Baseline {
            pid,
            before: proc_stat::memory(Some(pid)).ok(),
        })
        .collect()
}

/// What the members were asked to keep idle.
pub(crate) struct IdlePlan<'a> {
    pub(crate) secs: u64,
    pub(crate) heartbeat_secs: u32,
    pub(crate) redis: Option<&'a str>,
    /// Connections per comet pid, in order.
    pub(crate) shares: Vec<u64>,
}

/// Waits out the idle window, measuring around it.
pub(crate) async fn measure(
    plan: IdlePlan<'_>,
    baselines: &[Baseline],
) -> anyhow::Result<IdleSummary> {
    let connected: Vec<_> = baselines
        .iter()
        .map(|b| proc_stat::memory(Some(b.pid)).ok())
        .collect();
    let cpu_before: Vec<_> = baselines
        .iter()
        .map(|b| proc_stat::cpu_times(Some(b.pid)).ok())
        .collect();
    let mut redis = match plan.redis {
        Some(url) => Some(RedisProbe::connect(url).await?),
        None => None,
    };
    let redis_before = match &mut redis {
        Some(r) => Some(r.sample().await?),
        None => None,
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(plan.secs)).await;
    let secs = started.elapsed().as_secs_f64();
    let redis_load = match (&mut redis, redis_before) {
        (Some(r), Some(before)) => {
            let after = r.sample().await?;
            Some(RedisLoad {
                commands_per_sec: after.commands.saturating_sub(before.commands) as f64 / secs,
                cpu_percent: (after.cpu_secs - before.cpu_secs) / secs * 100.0,
            })
        }
        _ => None,
    };
    let comets = baselines
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let share = plan.shares.get(i).copied().unwrap_or(0);
            let now = proc_stat::memory(Some(b.pid));
            let cpu_after = proc_stat::cpu_times(Some(b.pid)).ok();
            match (b.before, connected.get(i).copied().flatten(), now) {
                (Some(before), Some(connected), Ok(now)) => {
                    let grown_kib = now.rss_kib.saturating_sub(before.rss_kib);
                    let cpu = match (cpu_before.get(i).copied().flatten(), cpu_after) {
                        (Some(a), Some(b)) => (b.own - a.own) / secs * 100.0,
                        _ => 0.0,
                    };
                    IdleComet {
                        pid: b.pid,
                        connections: share,
                        rss_before_mib: before.rss_kib as f64 / 1024.0,
                        rss_connected_mib: connected.rss_kib as f64 / 1024.0,
                        rss_idle_mib: now.rss_kib as f64 / 1024.0,
                        bytes_per_connection: (share > 0)
                            .then(|| grown_kib as f64 * 1024.0 / share as f64),
                        cpu_percent: cpu,
                        error: None,
                    }
                }
                _ => IdleComet {
                    pid: b.pid,
                    connections: share,
                    error: Some(format!("cannot read /proc/{}", b.pid)),
                    ..IdleComet::default()
                },
            }
        })
        .collect();
    Ok(IdleSummary {
        secs,
        heartbeat_secs: plan.heartbeat_secs,
        redis: redis_load,
        comets,
    })
}

/// Redis's command count and CPU, from `INFO`.
pub(crate) struct RedisProbe {
    conn: redis::aio::MultiplexedConnection,
}

pub(crate) struct RedisSample {
    pub(crate) commands: u64,
    pub(crate) cpu_secs: f64,
}

impl RedisProbe {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("--redis {url}"))?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to Redis at {url}"))?;
        Ok(Self { conn })
    }

    pub(crate) async fn sample(&mut self) -> anyhow::Result<RedisSample> {
        let info: String = redis::cmd("INFO")
            .arg("all")
            .query_async(&mut self.conn)
            .await
            .context("Redis INFO")?;
        parse_info(&info).context("reading Redis INFO")
    }
}

/// `total_commands_processed` and `used_cpu_sys + used_cpu_user` of an
/// `INFO` reply.
fn parse_info(info: &str) -> Option<RedisSample> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    Some(RedisSample {
        commands: field("total_commands_processed")?.parse().ok()?,
        cpu_secs: field("used_cpu_sys")?.parse::<f64>().ok()?
            + field("used_cpu_user")?.parse::<f64>().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read() {
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n\
                    # CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:2.25\r\nused_cpu_sys_children:9\r\n";
        let s = parse_info(info).expect("both fields");
        assert_eq!(s.commands, 1234);
        assert!((s.cpu_secs - 3.75).abs() < 1e-9);
        assert!(parse_info("# Stats\r\n").is_none());
    }
}
