//! `courier bench conns`: what holding many connections costs.
//!
//! N authenticated connections to one or more comets (spread over loopback
//! source addresses, and over `--procs` processes where one process's open
//! files are not enough), each its own user when `--jwt-secret` is given.
//! Reported: the connect + auth rate and every refused handshake; each
//! comet's resident memory per connection (`--comet-pid`, from `/proc`)
//! once connected and after `--idle-secs` of heartbeats; the commands Redis
//! ran per second while they idled (`--redis`); and, last, one room push to
//! every connection, which must reach every one.
//!
//! It is the fan-out generator ([`super::fanout`]) with an idle phase and
//! a single push; the numbers are printed with the connection figures first.

use super::fanout::{self, FanoutArgs};

/// Flags of `courier bench conns`.
#[derive(Debug, clap::Args)]
pub struct ConnsArgs {
    /// Logic's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3111")]
    pub server: String,
    /// Push API key (for the final room push).
    #[arg(long, env = "COURIER_API_KEY")]
    pub api_key: String,
    /// The bench user; with `--jwt-secret`, connection `i` is user
    /// `{user}-{i}`.
    #[arg(long, default_value = "bench-conns")]
    pub user: String,
    /// The bench user's password (used without `--jwt-secret`).
    #[arg(long, default_value = "bench-conns-password")]
    pub password: String,
    /// Each connection its own user, its token minted with this secret
    /// (the cluster's `jwt_secret`).
    #[arg(long, env = "COURIER_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Comet TCP address, repeatable (default: every comet login returns).
    #[arg(long = "comet", value_name = "HOST:PORT")]
    pub comets: Vec<String>,
    /// The room every connection joins (for the final push).
    #[arg(long, default_value = "bench-conns")]
    pub room: String,
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Processes holding them (this one included).
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Handshakes in flight at once, over all processes.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Further attempts after a refused or failed handshake.
    #[arg(long, default_value_t = 3)]
    pub handshake_retries: u32,
    /// Connections per loopback source address.
    #[arg(long, default_value_t = 1000)]
    pub per_source_ip: u32,
    /// Give up on the connect phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub connect_timeout_secs: u64,
    /// Seconds the connections idle, heartbeating, while measured.
    #[arg(long, default_value_t = 30)]
    pub idle_secs: u64,
    /// Seconds between one connection's heartbeats (0: two thirds of the
    /// comet's interval).
    #[arg(long, default_value_t = 10)]
    pub heartbeat_secs: u32,
    /// Redis URL whose `INFO` is read around the idle window.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// A comet's process id, repeatable, in the order of `--comet`.
    #[arg(long = "comet-pid", value_name = "PID")]
    pub comet_pids: Vec<u32>,
    /// Give up waiting for the final push this many seconds after sending.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the connections benchmark.
pub async fn conns(args: ConnsArgs) -> anyhow::Result<()> {
    let json = args.json;
    let report = fanout::measure(FanoutArgs {
        server: args.server,
        api_key: Some(args.api_key),
        user: args.user,
        password: args.password,
        comets: args.comets,
        room: args.room,
        members: args.connections,
        pushes: 1,
        rate: 0,
        payload: 64,
        in_flight: 1,
        connect_concurrency: args.connect_concurrency,
        handshake_retries: args.handshake_retries,
        per_source_ip: args.per_source_ip,
        sample_every: 0,
        procs: args.procs,
        connect_timeout_secs: args.connect_timeout_secs,
        timeout_secs: args.timeout_secs,
        comet_pids: args.comet_pids,
        jwt_secret: args.jwt_secret,
        heartbeat_secs: args.heartbeat_secs,
        idle_secs: args.idle_secs.max(1),
        redis: args.redis,
        json: false,
        worker: false,
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.conns_table());
    }
    Ok(())
}
