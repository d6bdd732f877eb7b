//! `courier bench asks`: many connections asking their room's head count
//! (`RoomOnline`) as fast as the comet lets them, and what answering costs
//! logic (CPU, from `/proc`) and Redis (commands and CPU, from `INFO`).
//!
//! Each connection is its own user, its token minted with `--jwt-secret`
//! (no password hash per user), and joins `--room` in its `Auth`. Once
//! every connection is in, each asks every `--every-ms` for `--secs`;
//! answers and `RATE_LIMITED` refusals are counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use courier_proto::client::{frame::Body, ErrorCode, Frame, RoomOnline};
use courier_proto::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::dial::SourceSpread;
use crate::fanout::idle::RedisProbe;
use crate::proc_stat;

/// Flags of `courier bench asks`.
#[derive(Debug, clap::Args)]
pub struct AsksArgs {
    /// The comet to connect to.
    #[arg(long, default_value = "127.0.0.1:3101")]
    pub comet: SocketAddr,
    /// The cluster's JWT secret, to mint each connection's token.
    #[arg(long, env = "COURIER_JWT_SECRET")]
    pub jwt_secret: String,
    /// Connections, each its own user.
    #[arg(long, default_value_t = 2000)]
    pub connections: u64,
    /// The room every connection joins and asks about.
    #[arg(long, default_value = "bench-asks")]
    pub room: String,
    /// Milliseconds between one connection's asks (50: the default
    /// `join_rate` of 20 a second).
    #[arg(long, default_value_t = 50)]
    pub every_ms: u64,
    /// Seconds the connections ask while measured.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Connections per loopback source address.
    #[arg(long, default_value_t = 1000)]
    pub per_source_ip: u32,
    /// Connections opening at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Logic's process id, for its CPU while measured.
    #[arg(long, value_name = "PID")]
    pub logic_pid: Option<u32>,
    /// Redis URL whose `INFO` is read around the measured window.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured: totals over `secs`.
#[derive(Debug, serde::Serialize)]
struct Report {
    connections: u64,
    room: String,
    secs: f64,
    asked: u64,
    answered: u64,
    rate_limited: u64,
    unavailable: u64,
    other: u64,
    logic_cpu_secs: Option<f64>,
    redis_commands: Option<u64>,
    redis_cpu_secs: Option<f64>,
}

impl Report {
    fn table(&self) -> String {
        let per_sec = |n: u64| n as f64 / self.secs;
        let mut out = format!(
            "connections      {} in room {}\n\
             asks             {:.0}/s sent, {:.0}/s answered, {:.0}/s RATE_LIMITED, {:.0}/s UNAVAILABLE, {:.0}/s other\n",
            self.connections,
            self.room,
            per_sec(self.asked),
            per_sec(self.answered),
            per_sec(self.rate_limited),
            per_sec(self.unavailable),
            per_sec(self.other),
        );
        if let Some(cpu) = self.logic_cpu_secs {
            out += &format!(
                "logic            {:.1}% CPU, {:.1} µs per answered ask\n",
                100.0 * cpu / self.secs,
                1e6 * cpu / (self.answered.max(1) as f64)
            );
        }
        if let (Some(commands), Some(cpu)) = (self.redis_commands, self.redis_cpu_secs) {
            out += &format!(
                "redis            {:.0} commands/s, {:.1}% CPU\n",
                per_sec(commands),
                100.0 * cpu / self.secs
            );
        }
        out
    }
}

/// Longest a connection may take to connect and authenticate.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the minted tokens.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Counts {
    asked: AtomicU64,
    answered: AtomicU64,
    limited: AtomicU64,
    /// `UNAVAILABLE`: the connection's reads in flight on the comet were
    /// all taken, or logic did not answer.
    unavailable: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    /// The counter a reply goes to.
    fn of(&self, frame: &Frame) -> &AtomicU64 {
        match &frame.body {
            Some(Body::RoomOnlineReply(_)) => &self.answered,
            Some(Body::Error(e)) if e.code == ErrorCode::RateLimited as i32 => &self.limited,
            Some(Body::Error(e)) if e.code == ErrorCode::Unavailable as i32 => &self.unavailable,
            _ => &self.other,
        }
    }
}

/// Runs the benchmark and prints its report.
pub async fn asks(args: AsksArgs) -> anyhow::Result<()> {
    proc_stat::raise_open_files_limit().context("raising the open-files limit")?;
    let keys = courier_runtime::TokenKeys::new(args.jwt_secret.as_bytes());
    let spread = Arc::new(SourceSpread::new(args.per_source_ip));
    let opening = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut connecting = Vec::new();
    for i in 0..args.connections {
        let token = keys
            .issue(&format!("bench-asks-{i}"), TOKEN_TTL)
            .context("minting a token")?;
        let (spread, opening, room, comet) = (
            spread.clone(),
            opening.clone(),
            args.room.clone(),
            args.comet,
        );
        connecting.push(tokio::spawn(async move {
            let _permit = opening.acquire().await.ok()?;
            tokio::time::timeout(CONNECT_TIMEOUT, open(&spread, i, comet, &token, &room))
                .await
                .ok()?
                .ok()
        }));
    }
    let mut conns = Vec::new();
    for task in connecting {
        if let Ok(Some(conn)) = task.await {
            conns.push(conn);
        }
    }
    if conns.len() as u64 != args.connections {
        bail!(
            "{} of {} connections authenticated",
            conns.len(),
            args.connections
        );
    }

    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let every = Duration::from_millis(args.every_ms.max(1));
    let mut redis = match &args.redis {
        Some(url) => Some(RedisProbe::connect(url).await?),
        None => None,
    };
    let redis_before = match redis.as_mut() {
        Some(r) => Some(r.sample().await?),
        None => None,
    };
    let logic_before = args
        .logic_pid
        .map(|p| proc_stat::cpu_times(Some(p)))
        .transpose()?;
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            tokio::spawn(ask(
                conn,
                args.room.clone(),
                every,
                counts.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.secs.max(1))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let logic_after = args
        .logic_pid
        .map(|p| proc_stat::cpu_times(Some(p)))
        .transpose()?;
    let redis_after = match redis.as_mut() {
        Some(r) => Some(r.sample().await?),
        None => None,
    };
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }

    let total = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let report = Report {
        connections: args.connections,
        room: args.room.clone(),
        secs: elapsed,
        asked: total(&counts.asked),
        answered: total(&counts.answered),
        rate_limited: total(&counts.limited),
        unavailable: total(&counts.unavailable),
        other: total(&counts.other),
        logic_cpu_secs: logic_before
            .zip(logic_after)
            .map(|(before, after)| after.own - before.own),
        redis_commands: redis_before
            .as_ref()
            .zip(redis_after.as_ref())
            .map(|(before, after)| after.commands.saturating_sub(before.commands)),
        redis_cpu_secs: redis_before
            .zip(redis_after)
            .map(|(before, after)| after.cpu_secs - before.cpu_secs),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

type Conn = Framed<tokio::net::TcpStream, FrameCodec>;

/// Connection `i`, authenticated and in `room`, its inbox page read.
async fn open(
    spread: &SourceSpread,
    i: u64,
    comet: SocketAddr,
    token: &str,
    room: &str,
) -> anyhow::Result<Conn> {
    let stream = spread.connect(i, comet, CONNECT_TIMEOUT).await?;
    let mut conn = Framed::new(stream, FrameCodec::new(courier_proto::DEFAULT_MAX_FRAME));
    conn.send(Frame::new(
        1,
        Body::Auth(courier_proto::client::Auth {
            token: token.to_owned(),
            rooms: vec![room.to_owned()],
            ..Default::default()
        }),
    ))
    .await?;
    // `AuthReply`, then the inbox page that always follows it.
    let mut authenticated = false;
    while let Some(frame) = conn.next().await {
        match frame?.body {
            Some(Body::AuthReply(_)) => authenticated = true,
            Some(Body::SyncReply(_)) if authenticated => return Ok(conn),
            Some(Body::Error(e)) => bail!("refused: {}", e.message),
            _ => {}
        }
    }
    bail!("closed before AuthReply and the inbox page")
}

/// Asks every `every` until `stop`, counting the replies.
async fn ask(
    conn: Conn,
    room: String,
    every: Duration,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let (mut tx, mut rx) = conn.split();
    let reader = {
        let (counts, stop) = (counts.clone(), stop.clone());
        async move {
            loop {
                let frame = tokio::select! {
                    _ = stop.cancelled() => return,
                    frame = rx.next() => frame,
                };
                let counter = match frame {
                    Some(Ok(frame)) => counts.of(&frame),
                    None | Some(Err(_)) => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let phase = Duration::from_micros(rand::random::<u64>() % every.as_micros().max(1) as u64);
    let mut tick = tokio::time::interval_at(Instant::now() + phase, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let writer = async {
        let mut id = 1u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            id += 1;
            let frame = Frame::new(id, Body::RoomOnline(RoomOnline { room: room.clone() }));
            if tx.send(frame).await.is_err() {
                return;
            }
            counts.asked.fetch_add(1, Ordering::Relaxed);
        }
    };
    tokio::join!(reader, writer);
}
