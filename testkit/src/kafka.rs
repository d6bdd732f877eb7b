//! Starts a Kafka-compatible broker for tests: `tansu` with in-memory
//! storage.
//!
//! tansu is a single Rust binary that speaks the Kafka protocol (producer
//! idempotence, consumer groups and rebalances included) and starts in
//! milliseconds, so every test can own a fresh broker instead of sharing a
//! JVM Kafka and cleaning topics between runs.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::{free_port, wait_for_port, ServerProcess};

/// How to get the broker binary.
pub const INSTALL_HINT: &str =
    "install it with `cargo install tansu --locked --features dynostore`";

/// How long the broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at finding a port nobody grabs between choosing and binding.
const START_ATTEMPTS: usize = 3;

/// A running tansu broker on a loopback port; killed on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    addr: SocketAddr,
    _process: ServerProcess,
}

impl KafkaBroker {
    /// Starts a broker with in-memory storage on a free loopback port and
    /// waits until it accepts connections. Fails (never skips) if `tansu`
    /// is not installed.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once().await {
                Ok(broker) => return Ok(broker),
                Err(e) if e.to_string().contains("not installed") => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("tansu did not start")))
    }

    async fn start_once() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-tansu")
            .tempdir()
            .context("creating tansu temp dir")?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = format!("tcp://{addr}");
        let mut cmd = Command::new("tansu");
        cmd.current_dir(dir.path())
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--cluster-id", &format!("courier-test-{port}")]);
        let mut process = ServerProcess::spawn("tansu", cmd, Some(dir), INSTALL_HINT)?;
        wait_for_port(addr, &mut process, START_TIMEOUT).await?;
        tracing::debug!(%addr, pid = process.pid(), "tansu broker started");
        Ok(Self {
            addr,
            _process: process,
        })
    }

    /// The `bootstrap.servers` value: `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// A queue URL for `topic` on this broker: `kafka://127.0.0.1:PORT/topic`.
    pub fn url(&self, topic: &str) -> String {
        format!("kafka://{}/{topic}", self.addr)
    }
}
