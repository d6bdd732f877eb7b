//! The server under test, started by the bench and always stopped by it.
//!
//! Each run gets a fresh `nats-server` or `redis-server` on a free loopback
//! port (bind 127.0.0.1:0, note the port, let it go; another process could
//! take it in between, in which case the server fails to start and the
//! bench says so), so nothing of an earlier run or of a cluster already
//! running on this machine is measured. [`Server`] is a guard: dropping it
//! kills the process and waits for it, on success and on every error path.
//! Redis runs with `--protected-mode no` (it would refuse subscribers from
//! 127.0.0.2 and up) but listens on 127.0.0.1 only, and with
//! `--maxclients` above the subscribers. The server's output goes to a log file in the temporary directory, read
//! back into the error when it dies early and removed when it is dropped.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use super::Kind;

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the port is tried while starting.
const START_POLL: Duration = Duration::from_millis(20);
/// Most of a dead server's log quoted in the error.
const LOG_TAIL: usize = 2000;

/// A running server process; killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `kind`'s server on a free loopback port, room for `clients`
    /// connections, and waits until the port accepts.
    pub(crate) async fn start(kind: Kind, clients: u64) -> anyhow::Result<Self> {
        let binary = kind.binary();
        check_installed(kind)?;
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::env::temp_dir().join(format!(
            "courier-bench-peer-{binary}-{}-{port}.log",
            std::process::id()
        ));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(binary);
        match kind {
            Kind::Nats => command.args(["-a", "127.0.0.1", "-p", &port.to_string()]),
            // Redis admits 10,000 clients unless told otherwise, and in
            // protected mode only from 127.0.0.1 itself, not from the other
            // loopback addresses subscribers connect from; it still listens
            // on 127.0.0.1 only.
            Kind::Redis => command.args([
                "--protected-mode",
                "no",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--maxclients",
                &(clients + 64).max(10_000).to_string(),
            ]),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(kind)),
            Err(e) => return Err(e).with_context(|| format!("starting {binary}")),
        };
        let mut server = Self { child, addr, log };
        server.wait_until_accepting(binary).await?;
        Ok(server)
    }

    /// Where the server listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_until_accepting(&mut self, binary: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        // Bounded by `deadline`.
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{binary} exited at start ({status}); its output:\n{}",
                    tail(&self.log)
                );
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{binary} did not accept connections on {} within {START_TIMEOUT:?}; its output:\n{}",
                    self.addr,
                    tail(&self.log)
                );
            }
            tokio::time::sleep(START_POLL).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL, then reap: the wait returns at once.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The version line `binary --version` prints, or why not.
pub(crate) async fn version(kind: Kind) -> String {
    let out = tokio::process::Command::new(kind.binary())
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), out).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().next().unwrap_or_default();
            // Redis goes on with its build's hash, allocator and so on.
            line.split(" sha=")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        }
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => "unknown (--version timed out)".to_owned(),
    }
}

/// Checks that `kind`'s server can be started, before any run begins.
pub(crate) fn check_installed(kind: Kind) -> anyhow::Result<()> {
    match find_on_path(kind.binary()) {
        Some(_) => Ok(()),
        None => Err(missing(kind)),
    }
}

fn missing(kind: Kind) -> anyhow::Error {
    anyhow::anyhow!(
        "`{}` not found on PATH; install it (Debian: `apt-get install {}`)",
        kind.binary(),
        kind.debian_package()
    )
}

/// The first `name` on `PATH` that is a file.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A loopback port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The end of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = text.len().saturating_sub(LOG_TAIL);
    String::from_utf8_lossy(&text[from..]).into_owned()
}
