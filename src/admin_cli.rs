//! The operator's and the application backend's commands, thin clients of
//! logic's HTTP API (an API key with the right scope), and `token`, which
//! needs no server at all:
//!
//! - `token --user UID`: a user token signed with the JWT secret, as logic
//!   signs them at login, for a backend that authenticates users itself.
//! - `push user|room|all`: `POST /api/v1/push/...`.
//! - `online [--room R]`: `GET /api/v1/online` (every comet's connections)
//!   or one room's.
//! - `drain COMET`: `POST /api/v1/admin/comets/{id}/drain`.
//! - `shards` is `courier store status` (the store's routing table).
//!
//! Every command prints the route's JSON answer and exits non-zero, with
//! the status and the server's error, when the route refuses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use courier_bench::trust::{http, LogicTarget};
use courier_runtime::token::TokenKeys;

use crate::config::CourierConfig;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `courier token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user the token is for.
    #[arg(long)]
    pub user: String,
    /// How long the token lives (e.g. `15m`, `24h`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The config whose JWT secret signs the token (`[auth] jwt_secret` or
    /// `[logic] jwt_secret`; `COURIER_AUTH__JWT_SECRET` works too).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `courier push ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PushCommand {
    /// Push to users (every device of each).
    User {
        #[command(flatten)]
        message: Message,
        /// The users.
        #[arg(required = true)]
        uids: Vec<String>,
    },
    /// Push to everyone in a room.
    Room {
        #[command(flatten)]
        message: Message,
        room: String,
    },
    /// Push to every connection of the cluster.
    All {
        #[command(flatten)]
        message: Message,
        /// Connections per second per comet (0: as fast as they take it).
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
}

/// What a push carries, and where it goes.
#[derive(Debug, clap::Args)]
pub struct Message {
    #[command(flatten)]
    logic: LogicTarget,
    /// The message: any JSON value, delivered as its JSON text.
    #[arg(long)]
    data: String,
    /// The application's operation code.
    #[arg(long, default_value_t = 0)]
    op: u32,
    /// Makes a retried push a repeat, not a second message.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// `courier online`.
#[derive(Debug, clap::Args)]
pub struct OnlineArgs {
    #[command(flatten)]
    logic: LogicTarget,
    /// One room's connections instead of every comet's.
    #[arg(long)]
    room: Option<String>,
}

/// `courier drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    logic: LogicTarget,
    /// The comet's id (`courier online` lists them).
    comet: String,
}

/// Prints a token for `args.user`.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let mut config = CourierConfig::load(args.config.as_deref())?;
    config.share_secrets();
    let secret = &config.logic.jwt_secret;
    if secret.len() < courier_runtime::MIN_SECRET_BYTES {
        bail!(
            "no JWT secret of at least {} bytes: set [auth] jwt_secret in --config or COURIER_AUTH__JWT_SECRET",
            courier_runtime::MIN_SECRET_BYTES
        );
    }
    courier_proto::names::check_uid(&args.user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
    let token = TokenKeys::new(secret.as_bytes())
        .issue(&args.user, args.ttl)
        .context("signing the token")?;
    println!("{token}");
    Ok(())
}

/// Sends a push and prints logic's answer.
pub async fn push(command: PushCommand) -> anyhow::Result<()> {
    let (message, path, mut body) = match command {
        PushCommand::User { message, uids } => (
            message,
            "push/users".to_owned(),
            serde_json::json!({ "uids": uids }),
        ),
        PushCommand::Room { message, room } => {
            let path = format!("push/rooms/{}", path_segment(&room));
            (message, path, serde_json::json!({}))
        }
        PushCommand::All { message, rate } => (
            message,
            "push/all".to_owned(),
            serde_json::json!({ "rate": rate }),
        ),
    };
    let data: Value = serde_json::from_str(&message.data).context("--data is not JSON")?;
    body["data"] = data;
    body["op"] = message.op.into();
    let client = client(&message.logic)?;
    let mut request = client
        .post(url(&message.logic, &path))
        .bearer_auth(&message.logic.api_key)
        .json(&body);
    if let Some(key) = &message.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    print_answer(request.send().await?).await
}

/// Prints the cluster's or one room's connections.
pub async fn online(args: OnlineArgs) -> anyhow::Result<()> {
    let path = match &args.room {
        Some(room) => format!("online/rooms/{}", path_segment(room)),
        None => "online".to_owned(),
    };
    let client = client(&args.logic)?;
    let request = client
        .get(url(&args.logic, &path))
        .bearer_auth(&args.logic.api_key);
    print_answer(request.send().await?).await
}

/// Asks logic to drain a comet.
pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let path = format!("admin/comets/{}/drain", path_segment(&args.comet));
    let client = client(&args.logic)?;
    let request = client
        .post(url(&args.logic, &path))
        .bearer_auth(&args.logic.api_key);
    print_answer(request.send().await?).await
}

fn client(logic: &LogicTarget) -> anyhow::Result<reqwest::Client> {
    Ok(http(logic.ca.as_deref())?
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

fn url(logic: &LogicTarget, path: &str) -> String {
    format!("{}/api/v1/{path}", logic.server.trim_end_matches('/'))
}

/// `name` as one URL path segment (a room named `a/b` stays one segment).
fn path_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Prints a 2xx answer's JSON; anything else is an error with its body.
async fn print_answer(response: reqwest::Response) -> anyhow::Result<()> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{status}: {}", text.trim());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        Err(_) => println!("{}", text.trim()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_stays_one_path_segment() {
        assert_eq!(path_segment("lobby"), "lobby");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("room-1"), "room%2D1");
    }
}
