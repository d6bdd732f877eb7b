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
//! The process is killed when the server is dropped. etcd's output goes to
//! `etcd.log` in the server's temp dir and is quoted when start-up fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{free_port, which};

const INSTALL_HINT: &str = "install it with `apt-get install etcd-server`";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) etcd with a fixed address and data dir.
#[derive(Debug)]
pub struct EtcdServer {
    program: PathBuf,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports and waits until it is healthy.
    /// Fails, saying how to install it, if `etcd` is not on the PATH.
    pub async fn start() -> anyhow::Result<Self> {
        let program =
            which("etcd").with_context(|| format!("`etcd` is not installed; {INSTALL_HINT}"))?;
        let dir = tempfile::Builder::new().prefix("courier-etcd").tempdir()?;
        let client_port = free_port()?;
        let mut peer_port = free_port()?;
        while peer_port == client_port {
            peer_port = free_port()?;
        }
        let mut server = Self {
            program,
            client_port,
            peer_port,
            dir,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// `etcd://127.0.0.1:{client port}`, the URL of the discovery backend.
    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
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
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(&self.program);
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
            if health(self.addr()).await {
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
