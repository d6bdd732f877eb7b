//! Real Redis for tests: one server ([`RedisServer`]) or a three-node Redis
//! Cluster ([`RedisCluster`]), each node on free loopback ports with its own
//! temp dir, persistence off, killed on drop.
//!
//! Uses the `redis-server` and `redis-cli` binaries of the Debian package
//! (`apt-get install redis-server`); a missing binary fails the test with
//! that hint. A cluster node's bus port is chosen explicitly
//! (`--cluster-port`, Redis 7+) rather than left at port + 10000, which can
//! fall outside the valid range for ephemeral ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{free_port, wait_for_port, which, ServerProcess};

const INSTALL_HINT: &str = "install it with `apt-get install redis-server`";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    process: Option<ServerProcess>,
}

impl RedisServer {
    /// Starts a standalone server on a free loopback port (trying fresh
    /// ports again if a parallel test took the one picked).
    pub async fn start() -> anyhow::Result<Self> {
        with_fresh_ports(Self::start_once).await
    }

    async fn start_once() -> anyhow::Result<Self> {
        let port = free_port()?;
        let process = start_node("redis", port, &[]).await?;
        Ok(Self {
            port,
            process: Some(process),
        })
    }

    /// Kills the server (SIGKILL): persistence is off, so what it held is
    /// gone, as after a crash of a Redis without persistence.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts a fresh, empty server on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.process = Some(start_node("redis", self.port, &[]).await?);
        Ok(())
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A three-master Redis Cluster (no replicas) covering all slots, every node
/// killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    ports: Vec<u16>,
    _nodes: Vec<ServerProcess>,
}

impl RedisCluster {
    /// Starts three cluster-enabled nodes, joins them into one cluster and
    /// waits until every node reports `cluster_state:ok` (trying fresh ports
    /// again if a parallel test took one of those picked).
    pub async fn start() -> anyhow::Result<Self> {
        with_fresh_ports(Self::start_once).await
    }

    async fn start_once() -> anyhow::Result<Self> {
        let cli = which("redis-cli")
            .with_context(|| format!("`redis-cli` is not installed; {INSTALL_HINT}"))?;
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let port = free_port()?;
            let bus = free_port()?;
            let bus = bus.to_string();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                bus.as_str(),
                "--cluster-node-timeout",
                "5000",
            ];
            nodes.push(start_node(&format!("redis-cluster-{i}"), port, &args).await?);
            ports.push(port);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = tokio::process::Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for port in &ports {
            wait_cluster_ok(&cli, *port).await?;
        }
        Ok(Self {
            ports,
            _nodes: nodes,
        })
    }

    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The client ports of the nodes.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

/// Starts one `redis-server` on `port` in a fresh temp dir and waits until it
/// accepts connections. On failure the error carries the server's log.
async fn start_node(name: &str, port: u16, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let dir = tempfile::tempdir().context("creating a temp dir for redis")?;
    let log: PathBuf = dir.path().join("redis-server.log");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log)
        .args(extra);
    let mut process = ServerProcess::spawn(name, cmd, Some(dir), INSTALL_HINT)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = wait_for_port(addr, &mut process, START_TIMEOUT).await {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("{e:#}\n--- {name} log ---\n{log}");
    }
    Ok(process)
}

/// Polls `CLUSTER INFO` on one node until it reports `cluster_state:ok`.
async fn wait_cluster_ok(cli: &std::path::Path, port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let out = tokio::process::Command::new(cli)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "cluster",
                "info",
            ])
            .output()
            .await
            .context("running redis-cli cluster info")?;
        let info = String::from_utf8_lossy(&out.stdout);
        if info.contains("cluster_state:ok") {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            bail!("redis cluster node {port} not ok within {START_TIMEOUT:?}:\n{info}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `start` up to three times: a port picked free can be taken by a
/// parallel test before the server binds it. A server that is missing or
/// broken fails all three times, and the last error is returned.
async fn with_fresh_ports<T, F, Fut>(mut start: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Ok(started) => return Ok(started),
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "redis did not start; trying fresh ports");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
