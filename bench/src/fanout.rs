//! `courier bench fanout`: how fast one room push reaches many members.
//!
//! One bench user logs in over HTTP; `--members` raw protocol connections
//! of that user join `--room` (spread round-robin over the comets, and over
//! loopback source addresses so the comet's per-IP cap and the ephemeral
//! port range do not bind); then `--pushes` room pushes go to
//! `POST /api/v1/push/rooms/{room}` at `--rate`, each stamped with its send
//! time. Every member counts what it reads; every `--sample-every`-th
//! decodes the stamp and records delivery latency. The run ends when every
//! member has every push, or at `--timeout-secs`.
//!
//! Phases, and why they are separate: connecting first (so the connect
//! rate and the push phase are measured apart and a comet's CPU is read
//! around the push phase only), then pushing and counting. With
//! `--procs K` the members are split over this process and K-1 workers
//! (see [`worker`]), because one process may hold only so many open files;
//! this process also sends the pushes.

pub(crate) mod idle;
mod pusher;
mod report;
mod worker;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::idle::IdlePlan;
use self::pusher::{send_pushes, PushPlan, Sent};
pub(crate) use self::report::FanoutReport;
use self::report::{CometCpu, Measured};
use self::worker::{Command, Report, Worker};
use super::dial::SourceSpread;
use super::members::{Members, MembersPlan, Mint, Outcome};
use super::proc_stat;

/// Open files a process keeps for itself beyond its members' sockets.
const SPARE_FILES: u64 = 128;
/// How often progress is checked while pushes are delivered.
const POLL: Duration = Duration::from_millis(10);
/// How long workers get to report after being told to stop.
const REPORT_GRACE: Duration = Duration::from_secs(15);
/// Largest frame a member accepts (the comet's default `max_frame`).
const MAX_FRAME: usize = courier_proto::DEFAULT_MAX_FRAME;

/// Flags of `courier bench fanout`.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    /// Logic's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3111")]
    pub server: String,
    /// Push API key.
    #[arg(long, env = "COURIER_API_KEY", required_unless_present = "worker")]
    pub api_key: Option<String>,
    /// The bench user (registered if new; every member is this user).
    #[arg(long, default_value = "bench-fanout")]
    pub user: String,
    /// The bench user's password.
    #[arg(long, default_value = "bench-fanout-password")]
    pub password: String,
    /// Comet TCP address to connect to, repeatable (default: every comet
    /// login returns). Members are spread round-robin.
    #[arg(long = "comet", value_name = "HOST:PORT")]
    pub comets: Vec<String>,
    /// The room every member joins.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Connections in the room.
    #[arg(long, default_value_t = 1000)]
    pub members: u64,
    /// Room pushes to send.
    #[arg(long, default_value_t = 1000)]
    pub pushes: u64,
    /// Pushes started per second (open loop); 0 = as fast as `--in-flight`
    /// allows.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Bytes of each push's `data` JSON (at least ~30: the stamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Push requests in flight at once (also the most HTTP connections).
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// Handshakes in flight at once, over all processes.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Further attempts after a refused or failed handshake.
    #[arg(long, default_value_t = 3)]
    pub handshake_retries: u32,
    /// Connections per loopback source address (127.0.0.2, .3, …);
    /// 0 = let the kernel choose.
    #[arg(long, default_value_t = 1000)]
    pub per_source_ip: u32,
    /// Every K-th member decodes messages and records latency; 0 = none.
    #[arg(long, default_value_t = 10)]
    pub sample_every: u64,
    /// Processes holding members (this one included); each may hold as
    /// many as its open-files limit allows.
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Give up on the connect phase after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub connect_timeout_secs: u64,
    /// Give up waiting for deliveries this many seconds after the first push.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// A comet's process id, repeatable: report its CPU during the push
    /// phase and its memory.
    #[arg(long = "comet-pid", value_name = "PID")]
    pub comet_pids: Vec<u32>,
    /// Each member its own user `{--user}-{i}`, its login token minted
    /// with this JWT secret (the cluster's `jwt_secret`) instead of one
    /// login shared by every member.
    #[arg(long, env = "COURIER_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Seconds between one member's heartbeats (0: two thirds of the
    /// comet's interval).
    #[arg(long, default_value_t = 0)]
    pub heartbeat_secs: u32,
    /// Between connecting and pushing, let the members idle this many
    /// seconds and measure what they cost (see `--redis`, `--comet-pid`).
    #[arg(long, default_value_t = 0)]
    pub idle_secs: u64,
    /// Redis URL to read `INFO` from around the idle window.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run as a worker process of another `bench fanout` (internal).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// `POST /login`'s answer, as far as the bench needs it.
#[derive(Debug, Deserialize)]
struct LoggedIn {
    token: String,
    comets: Vec<CometAddr>,
}

#[derive(Debug, Deserialize)]
struct CometAddr {
    tcp: String,
}

/// Runs the fan-out benchmark (or, with `--worker`, one worker of it).
pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    if args.worker {
        return worker::run().await;
    }
    let json = args.json;
    let report = measure(args).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Runs the phases (connect, idle, push) and sums up what they measured.
pub(crate) async fn measure(args: FanoutArgs) -> anyhow::Result<FanoutReport> {
    check(&args)?;
    let open_files = proc_stat::raise_open_files_limit().context("raising the open-files limit")?;
    let api_key = args.api_key.clone().context("--api-key is required")?;
    let server = args.server.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let login = login(&http, &server, &args.user, &args.password).await?;
    let comets = resolve_comets(&args.comets, &login).await?;

    let shares = split(args.members, args.procs);
    if let Some(&(_, most)) = shares.iter().max_by_key(|(_, n)| *n) {
        if most + SPARE_FILES > open_files {
            bail!(
                "{most} members per process need more than the {open_files} open files a \
                 process may have; use --procs {}",
                args.members
                    .div_ceil(open_files.saturating_sub(SPARE_FILES).max(1))
            );
        }
    }
    let plan_for = |(first, count): (u64, u64)| MembersPlan {
        first,
        count,
        comets: comets.clone(),
        token: login.token.clone(),
        room: args.room.clone(),
        per_source: args.per_source_ip,
        concurrency: args
            .connect_concurrency
            .div_ceil(args.procs.max(1) as usize),
        retries: args.handshake_retries,
        sample_every: args.sample_every,
        pushes: args.pushes,
        handshake_timeout_ms: 10_000,
        max_frame: MAX_FRAME,
        mint: args.jwt_secret.as_ref().map(|secret| Mint {
            jwt_secret: secret.clone(),
            uid_prefix: format!("{}-", args.user),
        }),
        heartbeat_secs: args.heartbeat_secs,
    };
    let baselines = idle::baselines(&args.comet_pids);
    let connect_timeout_ms = args.connect_timeout_secs.saturating_mul(1000);

    // Connect phase: workers and this process at once.
    let (reports_tx, mut reports) = mpsc::channel(64);
    let mut workers = Vec::new();
    for (i, share) in shares.iter().enumerate().skip(1) {
        let mut w = Worker::spawn(i, reports_tx.clone())?;
        w.send(&Command::Plan {
            plan: plan_for(*share),
            connect_timeout_ms,
        })
        .await?;
        workers.push(w);
    }
    drop(reports_tx);
    let own = Members::connect(plan_for(shares.first().copied().unwrap_or((0, 0))));
    let connect_deadline = Instant::now() + Duration::from_millis(connect_timeout_ms);
    let mut connects = vec![own.connected(connect_deadline).await];
    let mut worker_cpu_at_connect = 0.0;
    let report_deadline = connect_deadline + REPORT_GRACE;
    while connects.len() < shares.len() {
        match tokio::time::timeout_at(report_deadline, reports.recv()).await {
            Ok(Some((
                _,
                Ok(Report::Connected {
                    connected,
                    cpu_secs,
                }),
            ))) => {
                connects.push(connected);
                worker_cpu_at_connect += cpu_secs;
            }
            Ok(Some((i, Ok(other)))) => eprintln!("worker {i}: unexpected report {other:?}"),
            Ok(Some((i, Err(e)))) => eprintln!("worker {i}: {e:#}"),
            Ok(None) | Err(_) => break,
        }
    }
    if connects.len() < shares.len() {
        eprintln!(
            "{} of {} worker processes did not report connecting; their members are left out",
            shares.len() - connects.len(),
            shares.len() - 1
        );
    }

    // Idle phase.
    let idle = if args.idle_secs > 0 {
        let plan = IdlePlan {
            secs: args.idle_secs,
            heartbeat_secs: args.heartbeat_secs,
            redis: args.redis.as_deref(),
            shares: comet_shares(args.members, comets.len(), args.comet_pids.len())
                .into_iter()
                .map(|share| connected_share(share, &connects, args.members))
                .collect(),
        };
        Some(idle::measure(plan, &baselines).await?)
    } else {
        None
    };

    // Push phase.
    let comet_before: Vec<_> = args
        .comet_pids
        .iter()
        .map(|&pid| proc_stat::cpu_times(Some(pid)))
        .collect();
    let own_cpu_before = own_cpu();
    let timeout = Duration::from_secs(args.timeout_secs);
    for w in &mut workers {
        w.send(&Command::Go {
            timeout_ms: args.timeout_secs.saturating_mul(1000),
        })
        .await?;
    }
    let push_deadline = Instant::now() + timeout;
    let mut sender = tokio::spawn(send_pushes(PushPlan {
        url: format!("{server}/api/v1/push/rooms/{}", args.room),
        api_key,
        pushes: args.pushes,
        rate: args.rate,
        in_flight: args.in_flight,
        payload: args.payload,
        deadline: push_deadline,
    }));
    let mut sent: Option<Sent> = None;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut worker_cpu_at_done = 0.0;
    let mut own_settled = false;
    let mut told_stop = false;
    let expected_reports = connects.len() - 1;
    // Bounded by `push_deadline` plus the workers' grace to report.
    loop {
        own_settled = own_settled || (sent.is_some() && own.settled());
        if own_settled && sent.is_some() && outcomes.len() >= expected_reports {
            break;
        }
        let now = Instant::now();
        if now >= push_deadline && !told_stop {
            told_stop = true;
            for w in &mut workers {
                let _ = w.send(&Command::Stop).await;
            }
        }
        if now >= push_deadline + REPORT_GRACE {
            sender.abort();
            break;
        }
        tokio::select! {
            done = &mut sender, if sent.is_none() => {
                let s = match done {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(e.context("sending pushes")),
                    Err(e) => bail!("push sender failed: {e}"),
                };
                own.expect(s.accepted);
                for w in &mut workers {
                    w.send(&Command::Expect { pushes: s.accepted }).await?;
                }
                sent = Some(s);
            }
            report = reports.recv(), if outcomes.len() < expected_reports => match report {
                Some((_, Ok(Report::Done { outcome, cpu_secs }))) => {
                    outcomes.push(outcome);
                    worker_cpu_at_done += cpu_secs;
                }
                Some((i, Ok(other))) => eprintln!("worker {i}: unexpected report {other:?}"),
                Some((i, Err(e))) => eprintln!("worker {i}: {e:#}"),
                None => break,
            },
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let timed_out = !own_settled || outcomes.len() < expected_reports;
    let comet_cpu: Vec<CometCpu> = args
        .comet_pids
        .iter()
        .zip(comet_before)
        .map(|(&pid, before)| CometCpu {
            pid,
            before,
            after: proc_stat::cpu_times(Some(pid)),
            memory: proc_stat::memory(Some(pid)),
        })
        .collect();
    let own_cpu_after = own_cpu();
    outcomes.push(own.stop().await);
    for w in workers {
        w.finish().await;
    }

    let sent = sent.unwrap_or_default();
    let report = FanoutReport::new(Measured {
        room: &args.room,
        members: args.members,
        procs: args.procs,
        pushes: args.pushes,
        rate: args.rate,
        payload: args.payload,
        source_ips: SourceSpread::new(args.per_source_ip).sources_used(args.members),
        connects: &connects,
        sent: &sent,
        outcomes: &outcomes,
        timed_out,
        push_cpu: (own_cpu_after - own_cpu_before) + (worker_cpu_at_done - worker_cpu_at_connect),
        comets: comet_cpu,
        idle,
    });
    Ok(report)
}

/// A comet's share of the members scaled to those that connected (members
/// that gave up are spread evenly: the comets were offered them alike).
fn connected_share(share: u64, connects: &[super::members::Connected], members: u64) -> u64 {
    let connected: u64 = connects.iter().map(|c| c.connected).sum();
    if members == 0 {
        return 0;
    }
    (u128::from(share) * u128::from(connected) / u128::from(members)) as u64
}

/// Members each of `pids` comet processes holds: member `i` goes to comet
/// `i % comets`, and pids are taken in the order of the comets. With a
/// different number of pids than comets, an even split is the best guess.
fn comet_shares(members: u64, comets: usize, pids: usize) -> Vec<u64> {
    if comets == pids {
        let n = comets as u64;
        (0..n)
            .map(|k| members / n + u64::from(k < members % n))
            .collect()
    } else {
        let n = pids.max(1) as u64;
        vec![members / n; pids]
    }
}

fn check(args: &FanoutArgs) -> anyhow::Result<()> {
    if args.members == 0 || args.pushes == 0 {
        bail!("--members and --pushes must be positive");
    }
    if args.procs == 0 || u64::from(args.procs) > args.members {
        bail!("--procs must be between 1 and --members");
    }
    if args.in_flight == 0 || args.connect_concurrency == 0 {
        bail!("--in-flight and --connect-concurrency must be positive");
    }
    Ok(())
}

/// Registers the bench user (already taken is fine) and logs in.
async fn login(
    http: &reqwest::Client,
    server: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<LoggedIn> {
    let credentials = serde_json::json!({"username": user, "password": password});
    let r = http
        .post(format!("{server}/api/v1/users"))
        .json(&credentials)
        .send()
        .await
        .with_context(|| format!("registering at {server}"))?;
    let status = r.status().as_u16();
    if status != 201 && status != 409 {
        bail!(
            "registering {user}: HTTP {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = http
        .post(format!("{server}/api/v1/login"))
        .json(&credentials)
        .send()
        .await
        .with_context(|| format!("logging in at {server}"))?;
    if !r.status().is_success() {
        let status = r.status().as_u16();
        bail!(
            "logging in {user}: HTTP {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    r.json().await.context("reading the login answer")
}

/// `--comet` addresses, or every comet login named.
async fn resolve_comets(flags: &[String], login: &LoggedIn) -> anyhow::Result<Vec<SocketAddr>> {
    let names: Vec<&str> = if flags.is_empty() {
        login.comets.iter().map(|c| c.tcp.as_str()).collect()
    } else {
        flags.iter().map(String::as_str).collect()
    };
    if names.is_empty() {
        bail!("login named no comet; is one running? (or pass --comet HOST:PORT)");
    }
    let mut addrs = Vec::with_capacity(names.len());
    for name in names {
        let addr = tokio::net::lookup_host(name)
            .await
            .with_context(|| format!("resolving comet {name}"))?
            .next()
            .with_context(|| format!("comet {name} has no address"))?;
        addrs.push(addr);
    }
    Ok(addrs)
}

/// `members` split into `procs` contiguous `(first, count)` shares.
fn split(members: u64, procs: u32) -> Vec<(u64, u64)> {
    let procs = u64::from(procs.max(1));
    let (each, extra) = (members / procs, members % procs);
    let mut first = 0;
    (0..procs)
        .map(|p| {
            let count = each + u64::from(p < extra);
            let share = (first, count);
            first += count;
            share
        })
        .collect()
}

fn own_cpu() -> f64 {
    proc_stat::cpu_times(None).map_or(0.0, |t| t.own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comet_shares_follow_the_round_robin() {
        assert_eq!(comet_shares(10, 3, 3), vec![4, 3, 3]);
        assert_eq!(comet_shares(10, 1, 1), vec![10]);
        assert_eq!(comet_shares(10, 3, 2), vec![5, 5]);
    }

    #[test]
    fn split_covers_every_member_once() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(5, 1), vec![(0, 5)]);
        let shares = split(20_001, 2);
        assert_eq!(shares.iter().map(|s| s.1).sum::<u64>(), 20_001);
        assert_eq!(shares[1].0, shares[0].1);
    }
}
