//! `courier store`: operating the store of record through a logic's admin
//! routes (an API key with the `admin` scope).
//!
//! - `status`: every shard with its bucket ranges and nodes (in the read
//!   list or not, replay lag), the routing table's version, recent moves.
//! - `move --buckets 0-15,40 --to b`: moves buckets to shard `b` while
//!   pushes go on, and follows the moves until they are done (or one
//!   failed: asking again finishes it).

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use courier_bench::trust::{http, LogicTarget};

/// How often a move is polled.
const POLL: Duration = Duration::from_millis(500);

/// `courier store ...`.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Shards, nodes, routing and moves.
    Status {
        #[command(flatten)]
        logic: LogicTarget,
        /// Print the admin route's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move buckets to another shard, online, and wait until they moved.
    Move {
        #[command(flatten)]
        logic: LogicTarget,
        /// Buckets: numbers and ranges, e.g. `0-15,40`.
        #[arg(long)]
        buckets: String,
        /// The shard to move them to, by its configured name.
        #[arg(long)]
        to: String,
    },
}

/// Runs a `courier store` command.
pub async fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Status { logic, json } => {
            let status = status(&logic).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        StoreCommand::Move { logic, buckets, to } => {
            let buckets = parse_buckets(&buckets)?;
            move_buckets(&logic, &buckets, &to).await?;
        }
    }
    Ok(())
}

async fn status(logic: &LogicTarget) -> anyhow::Result<Value> {
    let client = http(logic.ca.as_deref())?.build()?;
    let reply = client
        .get(format!("{}/api/v1/admin/store", logic.server))
        .bearer_auth(&logic.api_key)
        .send()
        .await
        .context("asking logic for the store's status")?;
    let code = reply.status();
    let body: Value = reply.json().await.context("reading the status")?;
    if !code.is_success() {
        bail!("logic answered {code}: {}", body["error"]["message"]);
    }
    Ok(body)
}

fn print_status(status: &Value) {
    println!(
        "routing table version {}, {} buckets",
        status["routing_version"], status["buckets"]
    );
    for shard in status["shards"].as_array().into_iter().flatten() {
        let ranges: Vec<&str> = shard["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "shard {}  {} buckets ({})  {}",
            shard["name"].as_str().unwrap_or("?"),
            shard["buckets"],
            ranges.join(","),
            if shard["ready"] == true {
                "ready"
            } else {
                "NOT REACHED YET"
            },
        );
        for node in shard["nodes"].as_array().into_iter().flatten() {
            let lag = match node["lag_ms"].as_u64() {
                Some(ms) => format!("lag {ms} ms"),
                None => "no lag measured (primary, or not answering)".to_owned(),
            };
            let role = if node["readable"] == true {
                "reads here"
            } else {
                "not in the read list"
            };
            println!(
                "  node {}  {}  {role}  {lag}",
                node["host"].as_str().unwrap_or("?"),
                node["role"].as_str().unwrap_or("?"),
            );
        }
    }
    let moves = status["moves"].as_array().cloned().unwrap_or_default();
    if !moves.is_empty() {
        println!("moves (this logic):");
        for m in moves {
            print_move(&m);
        }
    }
}

fn print_move(m: &Value) {
    let fenced = m["fenced_ms"]
        .as_u64()
        .map(|ms| format!(", writes held {ms} ms"))
        .unwrap_or_default();
    let error = m["error"]
        .as_str()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    println!(
        "  bucket {} {} -> {}: {} ({} messages{fenced}){error}",
        m["bucket"],
        m["from"].as_str().unwrap_or("?"),
        m["to"].as_str().unwrap_or("?"),
        m["state"].as_str().unwrap_or("?"),
        m["messages"],
    );
}

async fn move_buckets(logic: &LogicTarget, buckets: &[u32], to: &str) -> anyhow::Result<()> {
    let client = http(logic.ca.as_deref())?.build()?;
    let before = status(logic).await?["moves"].as_array().map_or(0, Vec::len);
    let reply = client
        .post(format!("{}/api/v1/admin/store/moves", logic.server))
        .bearer_auth(&logic.api_key)
        .json(&json!({ "buckets": buckets, "to": to }))
        .send()
        .await
        .context("asking logic to move buckets")?;
    let code = reply.status();
    if !code.is_success() {
        let body: Value = reply.json().await.unwrap_or_default();
        bail!("logic answered {code}: {}", body["error"]["message"]);
    }
    println!("moving {} bucket(s) to {to}", buckets.len());
    let mut shown = before;
    loop {
        let moves = status(logic).await?["moves"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for m in moves.iter().skip(shown) {
            if matches!(m["state"].as_str(), Some("done" | "failed")) {
                print_move(m);
                shown += 1;
            } else {
                break;
            }
        }
        if let Some(failed) = moves.iter().skip(before).find(|m| m["state"] == "failed") {
            bail!(
                "bucket {} did not move; the rest were not tried: ask again to finish",
                failed["bucket"]
            );
        }
        if shown >= before + buckets.len() {
            println!("done");
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `0-3,7` -> `[0, 1, 2, 3, 7]`, each at most once.
fn parse_buckets(list: &str) -> anyhow::Result<Vec<u32>> {
    let mut buckets = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>()?, b.trim().parse::<u32>()?),
            None => {
                let b = part.parse::<u32>()?;
                (b, b)
            }
        };
        if last < first || last - first >= 1024 {
            bail!("bucket range {part}: first-last, at most 1024");
        }
        buckets.extend(first..=last);
    }
    let mut sorted = buckets.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != buckets.len() || buckets.is_empty() {
        bail!("--buckets: at least one, each once");
    }
    Ok(buckets)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lists_expand() {
        assert_eq!(parse_buckets("0-3,7").unwrap(), [0, 1, 2, 3, 7]);
        assert_eq!(parse_buckets(" 5 ").unwrap(), [5]);
        assert!(parse_buckets("3-1").is_err());
        assert!(parse_buckets("1,1").is_err());
        assert!(parse_buckets("").is_err());
        assert!(parse_buckets("x").is_err());
    }
}
