//! Courier's test kit, shared by every crate's tests so no helper is
//! written twice:
//!
//! - the real servers the cluster backends talk to ([`redis`], [`etcd`],
//!   [`kafka`], [`postgres`], and [`patroni`] for PostgreSQL replication
//!   groups with failover), each on a free loopback port with its own temp
//!   dir, stopped when the returned guard is dropped. A missing server
//!   binary is a loud failure that says how to install it, never a skipped
//!   test;
//! - [`FrameClient`], the frame-level peer that speaks the client protocol;
//! - message builders ([`messages`]);
//! - certificates made at test time ([`tls`]);
//! - bounded waiting ([`eventually`] and friends) and [`CallLog`], the
//!   recorder fakes use so a test can await the calls it expects.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A server process that is killed (and its temp dir removed) on drop.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Spawns `cmd`, sending its output to `log` inside `dir`.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        dir: Option<tempfile::TempDir>,
        install_hint: &str,
    ) -> anyhow::Result<Self> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        which(&program)
            .with_context(|| format!("`{program}` ({name}) is not installed; {install_hint}"))?;
        let log = match &dir {
            Some(d) => Stdio::from(std::fs::File::create(d.path().join(format!("{name}.log")))?),
            None => Stdio::null(),
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            _dir: dir,
        })
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds `program` on the PATH (or as given if it contains a `/`).
pub fn which(program: &str) -> anyhow::Result<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            bail!("{program} not found")
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} not found on PATH"))
}

/// `path` opened for appending (created if missing): where a server this
/// kit starts writes its output, kept across restarts.
pub fn append_log(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, or fails after `timeout`
/// (checking that `process` is still alive between tries).
pub async fn wait_for_port(
    addr: SocketAddr,
    process: &mut ServerProcess,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        process.check_alive()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "{} did not listen on {addr} within {timeout:?}",
                process.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub mod calls;
pub mod etcd;
pub mod frames;
pub mod kafka;
pub mod messages;
pub mod patroni;
pub mod postgres;
pub mod redis;
pub mod tls;
pub mod wait;

pub use calls::CallLog;
pub use frames::FrameClient;
pub use wait::{eventually, eventually_async, until_some, PATIENCE};

/// `GET path` over a fresh connection with `Connection: close`: the status
/// code (0 if the reply has none) and the body. Enough for probing admin
/// endpoints without an HTTP client.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
