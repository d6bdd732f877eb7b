//! A real single-node etcd for tests.
//!
//! [`EtcdServer::start`] runs `/usr/bin/etcd` (Debian: `etcd-server`) on
//! free loopback client and peer ports with a temp data dir, and returns
//! once etcd answers `/health`. The ports and data dir belong to the
//! server, not to one process, so a test can [`stop`](EtcdServer::stop) it
//! (SIGKILL: an outage, not a clean shutdown) and
//! [`restart`](EtcdServer::restart) it at the same address with the same
//! data — what a service sees when etcd crashes and comes back.
//!
//! [`EtcdServer::start_secured`] makes it serve clients over TLS only (a
//! certificate from [`crate::tls::TestCerts`]; `/health` then moves to a
//! plain metrics port of its own) and enable authentication with a `root`
//! user ([`EtcdSecurity`]).
//!
//! The process is killed when the server is dropped. etcd's output goes to
//! `etcd.log` in the server's temp dir and is quoted when start-up fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tls::TestCerts;
use crate::{free_port, which};

/// How an [`EtcdServer`] is secured. The default is neither TLS nor
/// authentication: plain `etcd://`.
#[derive(Debug, Clone, Default)]
pub struct EtcdSecurity {
    /// TLS for clients: `(CA, certificate, key)`.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Authentication on, as the `root` user with this password.
    root_password: Option<String>,
}

impl EtcdSecurity {
    /// Serves clients over TLS only, with the server certificate of `certs`
    /// (which must outlive the server).
    pub fn tls(mut self, certs: &TestCerts) -> Self {
        self.tls = Some((certs.ca.clone(), certs.cert.clone(), certs.key.clone()));
        self
    }

    /// Enables authentication with the user `root` (every permission)
    /// whose password is `password`. Tokens then lapse after
    /// [`AUTH_TOKEN_TTL`] unused, so a test sees clients renew them.
    pub fn root_password(mut self, password: &str) -> Self {
        self.root_password = Some(password.to_owned());
        self
    }
}

const INSTALL_HINT: &str = "install it with `apt-get install etcd-server`";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `--auth-token-ttl` of a server with authentication: an auth token not
/// used for this long is invalid (etcd's default is five minutes).
pub const AUTH_TOKEN_TTL: Duration = Duration::from_secs(2);

/// A running (or stopped) etcd with a fixed address and data dir.
#[derive(Debug)]
pub struct EtcdServer {
    program: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// Where `/health` is served over plain HTTP when clients get TLS.
    metrics_port: Option<u16>,
    security: EtcdSecurity,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports and waits until it is healthy.
    /// Fails, saying how to install it, if `etcd` is not on the PATH.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_secured(EtcdSecurity::default()).await
    }

    /// Starts etcd secured as `security` says: TLS for clients, and
    /// authentication enabled once it is healthy.
    pub async fn start_secured(security: EtcdSecurity) -> anyhow::Result<Self> {
        let program =
            which("etcd").with_context(|| format!("`etcd` is not installed; {INSTALL_HINT}"))?;
        let dir = tempfile::Builder::new().prefix("courier-etcd").tempdir()?;
        let mut ports = vec![free_port()?];
        let wanted = if security.tls.is_some() { 3 } else { 2 };
        while ports.len() < wanted {
            let port = free_port()?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut server = Self {
            program,
            client_port: ports[0],
            peer_port: ports[1],
            metrics_port: ports.get(2).copied(),
            security,
            dir,
            child: None,
        };
        server.restart().await?;
        if let Some(password) = server.security.root_password.clone() {
            server
                .enable_auth(&password)
                .await
                .with_context(|| format!("enabling auth; etcd's log:\n{}", server.log_tail()))?;
        }
        Ok(server)
    }

    /// Adds the `root` user and role and turns authentication on.
    async fn enable_auth(&self, password: &str) -> anyhow::Result<()> {
        use etcd_client::{Certificate, Client, ConnectOptions, TlsOptions};
        let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
        if let Some((ca, _, _)) = &self.security.tls {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            options =
                options.with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(pem)));
        }
        let endpoint = format!("{}://127.0.0.1:{}", self.http_scheme(), self.client_port);
        let mut client = Client::connect([endpoint], Some(options)).await?;
        client.role_add("root").await.context("role add root")?;
        client
            .user_add("root", password, None)
            .await
            .context("user add root")?;
        client
            .user_grant_role("root", "root")
            .await
            .context("user grant-role root root")?;
        client.auth_enable().await.context("auth enable")?;
        Ok(())
    }

    fn http_scheme(&self) -> &'static str {
        if self.security.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `etcd://127.0.0.1:{client port}`, the URL of the discovery backend:
    /// `etcds://` with TLS, and `root:password@` before the host with
    /// authentication.
    pub fn url(&self) -> String {
        let scheme = if self.security.tls.is_some() {
            "etcds"
        } else {
            "etcd"
        };
        let user = self
            .security
            .root_password
            .as_ref()
            .map(|p| format!("root:{p}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}", self.client_port)
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// The OS process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd (SIGKILL) and waits for it to exit. The data dir is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data dir (stopping it first
    /// if it runs) and waits until it is healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log_path = self.log_path();
        let log = crate::append_log(&log_path)?;
        let client = format!("{}://127.0.0.1:{}", self.http_scheme(), self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(&self.program);
        if let Some((_, cert, key)) = &self.security.tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
        if self.security.root_password.is_some() {
            cmd.arg("--auth-token-ttl")
                .arg(AUTH_TOKEN_TTL.as_secs().to_string());
        }
        if let Some(port) = self.metrics_port {
            cmd.arg("--listen-metrics-urls")
                .arg(format!("http://127.0.0.1:{port}"));
        }
        cmd.arg("--name")
            .arg("default")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("default={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        self.wait_healthy()
            .await
            .with_context(|| format!("etcd did not start; its log:\n{}", self.log_tail()))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn log_tail(&self) -> String {
        crate::log_tail(&self.log_path(), 20)
    }

    /// Polls `GET /health` until etcd reports itself healthy (it has a
    /// leader and serves requests), failing if the process exits.
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("etcd exited early with {status}");
                }
            }
            let probed = match self.metrics_port {
                Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
                None => self.addr(),
            };
            if health(probed).await {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "etcd was not healthy on {} within {START_TIMEOUT:?}",
                    self.addr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether etcd at `addr` answers `/health` with `"health":"true"`.
async fn health(addr: SocketAddr) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut body).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&body).contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}
