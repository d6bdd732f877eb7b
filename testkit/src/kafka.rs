//! Starts a Kafka-compatible broker for tests: `tansu`, with in-memory
//! storage (fast; the log dies with the process) or durable storage (a
//! SQLite file in the broker's temp dir, kept across restarts).
//!
//! tansu is a single Rust binary that speaks the Kafka protocol (producer
//! idempotence, consumer groups and rebalances included) and starts in
//! milliseconds, so every test can own a fresh broker instead of sharing a
//! JVM Kafka and cleaning topics between runs. A broker can be killed
//! (`SIGKILL`) and started again on the same port, to test what a client
//! does when its broker dies and comes back, empty or not.
//!
//! tansu's output goes to `tansu.log` in the broker's temp dir.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::{append_log, free_port, which};

/// How to get the broker binary.
pub const INSTALL_HINT: &str =
    "install it with `cargo install tansu --locked --features dynostore,libsql`";

/// How long the broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at finding a port nobody grabs between choosing and binding.
const START_ATTEMPTS: usize = 3;

/// Where the broker keeps its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In the process (`memory://`): a restart comes back empty.
    Memory,
    /// In a SQLite file (`sqlite://`): a restart comes back with every
    /// topic, record and committed offset.
    Durable,
}

impl Storage {
    fn url(self) -> &'static str {
        match self {
            Storage::Memory => "memory://tansu/",
            // Relative to the broker's working directory, its temp dir.
            Storage::Durable => "sqlite://tansu.db",
        }
    }
}

/// A running tansu broker on a loopback port; killed on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    addr: SocketAddr,
    storage: Storage,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl KafkaBroker {
    /// Starts a broker with in-memory storage on a free loopback port and
    /// waits until it accepts connections. Fails (never skips) if `tansu`
    /// is not installed.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Storage::Memory).await
    }

    /// Starts a broker with `storage` (see [`KafkaBroker::start`]).
    pub async fn start_with(storage: Storage) -> anyhow::Result<Self> {
        which("tansu").with_context(|| format!("`tansu` is not installed; {INSTALL_HINT}"))?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(storage).await {
                Ok(broker) => return Ok(broker),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("tansu did not start")))
    }

    async fn start_once(storage: Storage) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-tansu")
            .tempdir()
            .context("creating tansu temp dir")?;
        let port = free_port()?;
        let mut broker = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            storage,
            dir,
            child: None,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// Kills the broker (`SIGKILL`) and reaps it. A durable broker's file
    /// is kept, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage (killing it
    /// first if it runs) and waits until it accepts connections. A memory
    /// broker comes back empty: no topics, no offsets, no producers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = Some(self.spawn()?);
        if let Err(e) = self.wait_listening().await {
            self.kill();
            return Err(e.context(format!(
                "tansu did not start; its log:\n{}",
                crate::log_tail(&self.log_path(), 30)
            )));
        }
        tracing::debug!(addr = %self.addr, storage = ?self.storage, "tansu broker listening");
        Ok(())
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let listener = format!("tcp://{}", self.addr);
        let log = append_log(&self.log_path())?;
        let mut cmd = Command::new("tansu");
        cmd.current_dir(self.dir.path())
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", self.storage.url()])
            .args([
                "--cluster-id",
                &format!("courier-test-{}", self.addr.port()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        cmd.spawn().context("starting tansu")
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("tansu exited early with {status}");
                }
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "tansu did not listen on {} within {START_TIMEOUT:?}",
                    self.addr
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// The `bootstrap.servers` value: `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// A queue URL for `topic` on this broker: `kafka://127.0.0.1:PORT/topic`.
    pub fn url(&self, topic: &str) -> String {
        format!("kafka://{}/{topic}", self.addr)
    }

    /// Where it keeps its log.
    pub fn storage(&self) -> Storage {
        self.storage
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
