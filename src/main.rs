//! `courier`: one binary, one subcommand per role.
//!
//! `main` stays thin: parse flags, load config, build, run until a signal,
//! drain.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use courier::config::CourierConfig;
use courier::system::{bind_comet, bind_job, bind_logic};
use courier::{telemetry, System};
use courier_cluster::{backends, Backends};
use courier_runtime::shutdown::{self, CancellationToken};

#[derive(Parser)]
#[command(name = "courier", version, about = "Distributed IM push system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// TOML config file (`courier config defaults` prints every key).
    /// Environment variables COURIER_SECTION__KEY override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run comet, logic and job in one process (embedded backends by default).
    Up {
        #[command(flatten)]
        common: Common,
        /// API key for the push and admin routes (generated when unset).
        #[arg(long, env = "COURIER_API_KEY")]
        api_key: Option<String>,
    },
    /// Run one comet (connection gateway).
    Comet {
        #[command(flatten)]
        common: Common,
    },
    /// Run one logic (HTTP API and session logic).
    Logic {
        #[command(flatten)]
        common: Common,
    },
    /// Run one job (queue consumer, delivery to comets).
    Job {
        #[command(flatten)]
        common: Common,
    },
    /// Chat from the terminal.
    Chat(courier_chat::ChatArgs),
    /// Load generators.
    #[command(subcommand)]
    Bench(Bench),
    /// Operate the store of record: shards, nodes, bucket moves.
    #[command(subcommand)]
    Store(courier::store_cli::StoreCommand),
    /// Print a user token signed with the configured JWT secret.
    Token(courier::admin_cli::TokenArgs),
    /// Push a message through logic's HTTP API.
    #[command(subcommand)]
    Push(courier::admin_cli::PushCommand),
    /// Connections per comet, or in one room.
    Online(courier::admin_cli::OnlineArgs),
    /// Move a comet's clients to the other comets, then stop sending it any.
    Drain(courier::admin_cli::DrainArgs),
    /// The store's shards and routing table (`courier store status`).
    Shards {
        #[command(flatten)]
        logic: courier_bench::trust::LogicTarget,
        /// Print the admin route's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the defaults of every key, or check a config file.
    #[command(subcommand)]
    Config(courier::config_cli::ConfigCommand),
}

#[derive(Subcommand)]
enum Bench {
    /// Many idle connections: connect rate, memory per connection, backend
    /// load while idle, one push to all.
    Conns(courier_bench::ConnsArgs),
    /// Push -> receipt latency through a running system (p50/p99).
    E2e(courier_bench::E2eArgs),
    /// Room fan-out: many members in one room, room pushes, deliveries/s.
    Fanout(courier_bench::FanoutArgs),
    /// The fan-out workload against nats-server and Redis pub/sub (each
    /// started by the command on a free loopback port), for comparison.
    Peer(courier_bench::PeerArgs),
    /// The HTTP push API's requests/s and latency (or an empty route's).
    Push(courier_bench::PushArgs),
    /// Paging back through a long stored history: pages/s.
    History(courier_bench::HistoryArgs),
    /// Many connections asking their room's head count: what it costs
    /// logic and Redis.
    Asks(courier_bench::AsksArgs),
}

/// Loads the config, installs tracing and the metrics recorder that every
/// service's `/metrics` renders.
fn load(common: &Common) -> anyhow::Result<CourierConfig> {
    let mut config = CourierConfig::load(common.config.as_deref())?;
    config.share_secrets();
    telemetry::init_tracing(&config.log);
    if !telemetry::install_metrics() {
        tracing::warn!("cannot install the metrics recorder; /metrics will answer 404");
    }
    Ok(config)
}

/// ` admin ADDR`, or nothing when the admin listener is disabled.
fn admin_pair(addr: Option<std::net::SocketAddr>) -> String {
    addr.map(|a| format!(" admin {a}")).unwrap_or_default()
}

/// Cancels `token` on Ctrl-C / SIGTERM.
fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        tracing::info!("signal received, draining");
        t.cancel();
    });
    token
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(run(cli));
    // Every service has drained by now. What may remain is a blocking read
    // of stdin (`courier chat`), which would hold a normal runtime drop
    // until the user typed another line.
    runtime.shutdown_background();
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up { common, api_key } => {
            let mut config = load(&common)?;
            if let Some(key) = api_key {
                config.auth.api_key = key;
                config.logic.api_key.clear();
            }
            let system = System::start(config, 1).await?;
            print_banner(&system);
            system.run_until(shutdown::signal()).await;
        }
        Command::Comet { common } => {
            let config = load(&common)?;
            // A comet talks to discovery only: no session store, queue or
            // database connection.
            let discovery = backends::connect_discovery(&config.cluster).await?;
            let comet = bind_comet(config.comet, discovery).await?;
            let ws = comet
                .ws_addr()
                .map(|a| format!(" ws {a}"))
                .unwrap_or_default();
            println!(
                "comet {} tcp {}{ws} grpc {}{}",
                comet.id(),
                comet.tcp_addr(),
                comet.grpc_addr(),
                admin_pair(comet.admin_addr())
            );
            comet.run(cancel_on_signal()).await?;
        }
        Command::Logic { common } => {
            let config = load(&common)?;
            let backends = Backends::connect(&config.cluster).await?;
            let logic = bind_logic(config.logic, &backends).await?;
            println!(
                "logic {} http {} grpc {}{}",
                logic.id(),
                logic.http_addr(),
                logic.grpc_addr(),
                admin_pair(logic.admin_addr())
            );
            logic.run(cancel_on_signal()).await?;
        }
        Command::Job { common } => {
            let config = load(&common)?;
            let queue = backends::connect_queue(&config.cluster).await?;
            let discovery = backends::connect_discovery(&config.cluster).await?;
            let group = config.job.group.clone();
            let job = bind_job(config.job, queue, discovery).await?;
            println!(
                "job {} group {}{}",
                job.id(),
                group,
                admin_pair(job.admin_addr())
            );
            job.run(cancel_on_signal()).await?;
        }
        Command::Chat(args) => courier_chat::run(args).await?,
        Command::Bench(Bench::Conns(args)) => courier_bench::conns(args).await?,
        Command::Bench(Bench::E2e(args)) => courier_bench::e2e(args).await?,
        Command::Bench(Bench::Fanout(args)) => courier_bench::fanout(args).await?,
        Command::Bench(Bench::Peer(args)) => courier_bench::peer(args).await?,
        Command::Bench(Bench::Push(args)) => courier_bench::push(args).await?,
        Command::Bench(Bench::History(args)) => courier_bench::history(args).await?,
        Command::Bench(Bench::Asks(args)) => courier_bench::asks(args).await?,
        Command::Store(command) => courier::store_cli::run(command).await?,
        Command::Config(command) => courier::config_cli::run(command)?,
        Command::Token(args) => courier::admin_cli::token(args)?,
        Command::Push(command) => courier::admin_cli::push(command).await?,
        Command::Online(args) => courier::admin_cli::online(args).await?,
        Command::Drain(args) => courier::admin_cli::drain(args).await?,
        Command::Shards { logic, json } => {
            courier::store_cli::run(courier::store_cli::StoreCommand::Status { logic, json })
                .await?
        }
    }
    Ok(())
}

/// How to call this binary from the current directory (`courier` is not on
/// the PATH after `scripts/up.sh`).
fn this_binary() -> String {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    match (exe, cwd) {
        (Some(exe), Some(cwd)) => exe
            .strip_prefix(&cwd)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| exe.display().to_string()),
        _ => "courier".to_owned(),
    }
}

fn print_banner(system: &System) {
    let http = system.logic_url();
    let bin = this_binary();
    let cluster = &system.config.cluster;
    let shards = cluster.store_shards().map(|s| s.len()).unwrap_or_default();
    if shards == 0 && cluster.sessions == "memory://" {
        println!("Courier is up (embedded backends: memory://).");
    } else {
        println!(
            "Courier is up (store of record: {shards} PostgreSQL shard(s); sessions: {}).",
            cluster.sessions
        );
    }
    println!("  logic  HTTP {http}/api/v1   gRPC {}", system.logic_grpc);
    if let Some(admin) = system.logic_admin {
        println!("  logic  admin http://{admin}/metrics  /healthz  /readyz");
    }
    for c in &system.comets {
        println!("  comet  {}  TCP {}   gRPC {}", c.id, c.tcp, c.grpc);
        if let Some(ws) = c.ws {
            println!("  comet  {}  WebSocket ws://{ws}/ws", c.id);
        }
        if let Some(admin) = c.admin {
            println!(
                "  comet  {}  admin http://{admin}/metrics  /healthz  /readyz",
                c.id
            );
        }
    }
    for j in &system.jobs {
        if let Some(admin) = j.admin {
            println!(
                "  job    {}  admin http://{admin}/metrics  /healthz  /readyz",
                j.id
            );
        }
    }
    println!("  API key: {}", system.api_key());
    println!();
    println!("Web chat: open {http}/ in a browser");
    println!("Chat (two terminals):");
    println!("  {bin} chat --server {http} --user alice --password secret123 --register");
    println!("  {bin} chat --server {http} --user bob --password secret123 --register");
    println!("Push to everyone in #lobby:");
    println!(
        "  curl -X POST {http}/api/v1/push/rooms/lobby -H 'Authorization: Bearer {}' \\\n       -H 'Content-Type: application/json' -d '{{\"op\":1001,\"data\":{{\"hello\":\"lobby\"}}}}'",
        system.api_key()
    );
    println!("Ctrl-C stops everything.");
}
