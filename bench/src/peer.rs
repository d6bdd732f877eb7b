//! `courier bench peer`: the room fan-out workload of `bench fanout`, run
//! against nats-server and Redis pub/sub, so Courier's numbers have
//! something to be compared with on the same machine.
//!
//! For each target the command starts its own server on a free loopback
//! port ([`server`]; killed and reaped when the run ends, also on error),
//! connects `--subscribers` raw TCP clients to one subject/channel
//! ([`subscribers`]; they speak the NATS text protocol or RESP themselves,
//! no client crates, so a subscriber is as cheap as a `bench fanout`
//! member), then publishes `--publishes` payloads of `--payload` bytes open
//! loop at `--rate` over one connection ([`publisher`]). Each payload is
//! `{"t":<unix µs>,"p":"xxx…"}` like a fan-out push's `data`; every
//! `--sample-every`-th subscriber reads `t` back for latency. Deliveries/s
//! is subscribers × publishes received over first publish → last delivery.
//!
//! Phases: connect (bounded by `--timeout-secs`), then publish and count
//! (ending when every subscriber has every publish, or `--timeout-secs`
//! after the first publish, reporting what arrived). The server's CPU is
//! read from `/proc/PID/stat` around the publish phase only.
//!
//! One process holds every subscriber: at most the open-files limit minus
//! a few (about 19,000 here, where the hard limit is 20,000); the server,
//! started by this process, inherits the raised limit too.

mod nats;
mod publisher;
mod report;
mod resp;
mod server;
mod subscribers;

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use self::report::{Measured, PeerReport, TargetReport};
use self::server::Server;
use self::subscribers::Subscribers;
use super::dial::SourceSpread;
use super::proc_stat;

/// Open files this process keeps for itself beyond its subscribers' sockets.
const SPARE_FILES: u64 = 128;
/// Largest payload: nats-server's default `max_payload` (1 MiB).
const MAX_PAYLOAD: usize = 1024 * 1024;
/// How often progress is checked while publishes are delivered.
const POLL: Duration = Duration::from_millis(10);
/// How long the publisher may overrun the deadline before it is abandoned.
const PUBLISHER_GRACE: Duration = Duration::from_secs(15);

/// Which servers `bench peer` runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerTarget {
    /// nats-server.
    Nats,
    /// Redis pub/sub.
    Redis,
    /// nats-server, then Redis.
    Both,
}

/// Flags of `courier bench peer`.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// The server(s) to run against, each started by this command
    /// (`nats-server`, `redis-server` must be on PATH).
    #[arg(long, value_enum, default_value_t = PeerTarget::Both)]
    pub target: PeerTarget,
    /// Subscribers of the one subject/channel (one process holds them all:
    /// at most the open-files limit minus 128).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u64,
    /// Messages to publish.
    #[arg(long, default_value_t = 1000)]
    pub publishes: u64,
    /// Publishes started per second (open loop); 0 = as fast as possible.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Bytes of each payload (at least ~30: the stamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Every K-th subscriber parses payloads and records latency; 0 = none.
    #[arg(long, default_value_t = 10)]
    pub sample_every: u64,
    /// Connections per loopback source address (127.0.0.2, .3, …);
    /// 0 = let the kernel choose.
    #[arg(long, default_value_t = 1000)]
    pub per_source_ip: u32,
    /// Give up on the connect phase, and on deliveries, this many seconds
    /// after each starts.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One server `bench peer` can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Nats,
    Redis,
}

impl Kind {
    /// The server binary.
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Kind::Nats => "nats-server",
            Kind::Redis => "redis-server",
        }
    }

    /// The Debian package that installs [`Kind::binary`].
    pub(crate) fn debian_package(self) -> &'static str {
        match self {
            Kind::Nats => "nats-server",
            Kind::Redis => "redis-server",
        }
    }

    /// The name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Nats => "nats",
            Kind::Redis => "redis",
        }
    }
}

/// Bytes from a server that are not its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadBytes(pub(crate) &'static str);

/// Runs the fan-out workload against each target and prints the numbers.
pub async fn peer(args: PeerArgs) -> anyhow::Result<()> {
    let kinds = match args.target {
        PeerTarget::Nats => vec![Kind::Nats],
        PeerTarget::Redis => vec![Kind::Redis],
        PeerTarget::Both => vec![Kind::Nats, Kind::Redis],
    };
    check(&args)?;
    for &kind in &kinds {
        server::check_installed(kind)?;
    }
    let mut targets = Vec::new();
    for kind in kinds {
        // Ctrl-C drops the run, and with it the server's guard, which
        // kills the server rather than leaving it behind.
        let report = tokio::select! {
            report = run(kind, &args) => report,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
        .with_context(|| format!("bench peer against {}", kind.binary()))?;
        targets.push(report);
    }
    let report = PeerReport {
        subscribers: args.subscribers,
        publishes: args.publishes,
        rate: args.rate,
        payload: args.payload,
        sample_every: args.sample_every,
        targets,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Refuses flags that cannot make a run, among them more subscribers than
/// this process may hold open files for.
fn check(args: &PeerArgs) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.publishes == 0 {
        bail!("--subscribers and --publishes must be positive");
    }
    if args.payload > MAX_PAYLOAD {
        bail!("--payload may be at most {MAX_PAYLOAD} bytes (nats-server's max_payload)");
    }
    let open_files = proc_stat::raise_open_files_limit().context("raising the open-files limit")?;
    if args.subscribers.saturating_add(SPARE_FILES) > open_files {
        bail!(
            "{} subscribers need {} open files, and this process may have {open_files} \
             (the hard limit, `ulimit -Hn`); at most {} subscribers fit in one process",
            args.subscribers,
            args.subscribers.saturating_add(SPARE_FILES),
            open_files.saturating_sub(SPARE_FILES)
        );
    }
    Ok(())
}

/// One target: start its server, connect, publish, count, stop.
async fn run(kind: Kind, args: &PeerArgs) -> anyhow::Result<TargetReport> {
    let version = server::version(kind).await;
    let server = Server::start(kind, args.subscribers).await?;
    let pid = server.pid();
    let timeout = Duration::from_secs(args.timeout_secs);

    // Connect phase.
    let subs = Subscribers::connect(subscribers::Plan {
        kind,
        server: server.addr(),
        count: args.subscribers,
        per_source: args.per_source_ip,
        sample_every: args.sample_every,
        max_payload: args.payload.max(64),
    });
    let connected = subs.connected(Instant::now() + timeout).await;

    // Publish phase.
    let server_before = proc_stat::cpu_times(Some(pid));
    let own_before = own_cpu();
    let deadline = Instant::now() + timeout;
    let mut publisher = tokio::spawn(publisher::publish(publisher::Plan {
        kind,
        server: server.addr(),
        publishes: args.publishes,
        rate: args.rate,
        payload: args.payload,
        deadline,
    }));
    let mut sent = None;
    let timed_out;
    // Bounded by `deadline` (plus the publisher's grace).
    loop {
        let now = Instant::now();
        if sent.is_some() {
            if subs.settled() {
                timed_out = false;
                break;
            }
            if now >= deadline {
                timed_out = true;
                break;
            }
        } else if now >= deadline + PUBLISHER_GRACE {
            publisher.abort();
            timed_out = true;
            break;
        }
        tokio::select! {
            done = &mut publisher, if sent.is_none() => {
                let s = match done {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(e.context("publishing")),
                    Err(e) => bail!("publisher failed: {e}"),
                };
                subs.expect(s.published);
                sent = Some(s);
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let server_after = proc_stat::cpu_times(Some(pid));
    let server_memory = proc_stat::memory(Some(pid));
    let generator_cpu_secs = own_cpu() - own_before;
    let outcome = subs.stop().await;
    drop(server);

    Ok(TargetReport::new(Measured {
        kind,
        server: version,
        server_pid: pid,
        subscribers: args.subscribers,
        source_ips: SourceSpread::new(args.per_source_ip).sources_used(args.subscribers),
        publishes: args.publishes,
        connected,
        timed_out: timed_out || sent.as_ref().is_some_and(|s| s.hit_deadline),
        sent: sent.unwrap_or_default(),
        outcome,
        server_before,
        server_after,
        server_memory,
        generator_cpu_secs,
    }))
}

fn own_cpu() -> f64 {
    proc_stat::cpu_times(None).map_or(0.0, |t| t.own)
}
