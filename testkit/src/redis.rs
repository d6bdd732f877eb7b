//! Real Redis for tests: one server ([`RedisServer`]) or a three-node Redis
//! Cluster ([`RedisCluster`]), each node on free loopback ports with its own
//! temp dir, persistence off, killed on drop.
//!
//! Either can be secured ([`RedisSecurity`]): TLS only (`--port 0` and
//! `--tls-port`, a certificate from [`crate::tls::TestCerts`]; between
//! cluster nodes too) and an ACL user with every permission in place of the
//! `default` user, which is then disabled.
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

use crate::tls::TestCerts;
use crate::{free_port, wait_for_port, which, ServerProcess};

const INSTALL_HINT: &str = "install it with `apt-get install redis-server`";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How a server (or every node of a cluster) is secured. The default is
/// neither TLS nor ACL users: plain `redis://`.
#[derive(Debug, Clone, Default)]
pub struct RedisSecurity {
    /// TLS only, with these files: `(CA, certificate, key)`. Clients are
    /// not asked for certificates.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// An ACL user `(name, password)` allowed everything; the `default`
    /// user is disabled.
    user: Option<(String, String)>,
}

impl RedisSecurity {
    /// Serves TLS only, with the server certificate of `certs` (which must
    /// outlive the server).
    pub fn tls(mut self, certs: &TestCerts) -> Self {
        self.tls = Some((certs.ca.clone(), certs.cert.clone(), certs.key.clone()));
        self
    }

    /// Requires the ACL user `name` with `password`; the `default` user is
    /// disabled.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.user = Some((name.to_owned(), password.to_owned()));
        self
    }

    /// `redis` or `rediss`.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// `user:password@`, or nothing.
    fn userinfo(&self) -> String {
        self.user
            .as_ref()
            .map(|(u, p)| format!("{u}:{p}@"))
            .unwrap_or_default()
    }

    /// `redis-server` arguments for a node on `port`.
    fn server_args(&self, port: u16, cluster: bool) -> Vec<String> {
        let mut args = Vec::new();
        match &self.tls {
            Some((ca, cert, key)) => {
                args.extend(["--port".to_owned(), "0".to_owned()]);
                args.extend(["--tls-port".to_owned(), port.to_string()]);
                for (flag, path) in [
                    ("--tls-cert-file", cert),
                    ("--tls-key-file", key),
                    ("--tls-ca-cert-file", ca),
                ] {
                    args.extend([flag.to_owned(), path.display().to_string()]);
                }
                args.extend(["--tls-auth-clients".to_owned(), "no".to_owned()]);
                if cluster {
                    args.extend(["--tls-cluster".to_owned(), "yes".to_owned()]);
                }
            }
            None => args.extend(["--port".to_owned(), port.to_string()]),
        }
        if let Some((user, password)) = &self.user {
            // One argument per word: redis-server quotes each.
            args.extend(["--user".to_owned(), user.clone(), "on".to_owned()]);
            args.push(format!(">{password}"));
            args.extend(["~*", "&*", "+@all"].map(str::to_owned));
            args.extend(["--user", "default", "off"].map(str::to_owned));
        }
        args
    }

    /// `redis-cli` arguments to reach a node secured so.
    fn cli_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some((ca, _, _)) = &self.tls {
            args.extend(["--tls".to_owned(), "--cacert".to_owned()]);
            args.push(ca.display().to_string());
        }
        if let Some((user, password)) = &self.user {
            args.extend(["--user".to_owned(), user.clone(), "--pass".to_owned()]);
            args.extend([password.clone(), "--no-auth-warning".to_owned()]);
        }
        args
    }
}

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    security: RedisSecurity,
    process: Option<ServerProcess>,
}

impl RedisServer {
    /// Starts a standalone server on a free loopback port (trying fresh
    /// ports again if a parallel test took the one picked).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_secured(RedisSecurity::default()).await
    }

    /// Starts a standalone server secured as `security` says.
    pub async fn start_secured(security: RedisSecurity) -> anyhow::Result<Self> {
        with_fresh_ports(|| Self::start_once(security.clone())).await
    }

    async fn start_once(security: RedisSecurity) -> anyhow::Result<Self> {
        let port = free_port()?;
        let process = start_node("redis", &security.server_args(port, false), port).await?;
        Ok(Self {
            port,
            security,
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
        let args = self.security.server_args(self.port, false);
        self.process = Some(start_node("redis", &args, self.port).await?);
        Ok(())
    }

    /// `redis://127.0.0.1:<port>`; `rediss://` with TLS, and
    /// `user:password@` before the host with an ACL user.
    pub fn url(&self) -> String {
        format!(
            "{}://{}127.0.0.1:{}",
            self.security.scheme(),
            self.security.userinfo(),
            self.port
        )
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
    security: RedisSecurity,
    _nodes: Vec<ServerProcess>,
}

impl RedisCluster {
    /// Starts three cluster-enabled nodes, joins them into one cluster and
    /// waits until every node reports `cluster_state:ok` (trying fresh ports
    /// again if a parallel test took one of those picked).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_secured(RedisSecurity::default()).await
    }

    /// Starts a cluster whose every node is secured as `security` says.
    pub async fn start_secured(security: RedisSecurity) -> anyhow::Result<Self> {
        with_fresh_ports(|| Self::start_once(security.clone())).await
    }

    async fn start_once(security: RedisSecurity) -> anyhow::Result<Self> {
        let cli = which("redis-cli")
            .with_context(|| format!("`redis-cli` is not installed; {INSTALL_HINT}"))?;
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let port = free_port()?;
            let bus = free_port()?;
            let mut args = security.server_args(port, true);
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-node-timeout",
                    "5000",
                ]
                .map(str::to_owned),
            );
            if let Some((user, password)) = &security.user {
                // What a node that joins would authenticate with.
                args.extend(["--masteruser".to_owned(), user.clone()]);
                args.extend(["--masterauth".to_owned(), password.clone()]);
            }
            nodes.push(start_node(&format!("redis-cluster-{i}"), &args, port).await?);
            ports.push(port);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = tokio::process::Command::new(&cli)
            .args(security.cli_args())
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
            wait_cluster_ok(&cli, &security, *port).await?;
        }
        Ok(Self {
            ports,
            security,
            _nodes: nodes,
        })
    }

    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`;
    /// `rediss+cluster://` with TLS, and `user:password@` before the hosts
    /// with an ACL user.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "{}+cluster://{}{}",
            self.security.scheme(),
            self.security.userinfo(),
            nodes.join(",")
        )
    }

    /// The client ports of the nodes.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

/// Starts one `redis-server` with `args` (which make it listen on `port`) in
/// a fresh temp dir and waits until it accepts connections. On failure the
/// error carries the server's log.
async fn start_node(name: &str, args: &[String], port: u16) -> anyhow::Result<ServerProcess> {
    let dir = tempfile::tempdir().context("creating a temp dir for redis")?;
    let log: PathBuf = dir.path().join("redis-server.log");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log);
    let mut process = ServerProcess::spawn(name, cmd, Some(dir), INSTALL_HINT)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = wait_for_port(addr, &mut process, START_TIMEOUT).await {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("{e:#}\n--- {name} log ---\n{log}");
    }
    Ok(process)
}

/// Polls `CLUSTER INFO` on one node until it reports `cluster_state:ok`.
async fn wait_cluster_ok(
    cli: &std::path::Path,
    security: &RedisSecurity,
    port: u16,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let out = tokio::process::Command::new(cli)
            .args(security.cli_args())
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
