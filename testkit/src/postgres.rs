//! A real single PostgreSQL 15 for tests, and what it shares with the
//! Patroni-managed groups of [`crate::patroni`]: who the server runs as,
//! how a postmaster is killed, how a test connects.
//!
//! [`PostgresServer::start`] copies an initdb'd data dir into a fresh temp
//! dir, starts `postgres` on a free loopback port (its unix socket inside
//! that temp dir), waits until it answers a query and creates the database
//! `courier`. The port and data belong to the server, so a test can
//! [`kill`](PostgresServer::kill) it (SIGKILL to the postmaster and every
//! backend: a crash, not a shutdown) and [`restart`](PostgresServer::restart)
//! it at the same address with the same data. This kind runs with
//! `fsync=off`: a commit is written to the kernel, so it survives a crash
//! of PostgreSQL (what [`kill`](PostgresServer::kill) does) but not of the
//! machine, which no test here simulates. (`synchronous_commit=off` would
//! lose the last commits to a kill, so it stays on.)
//!
//! initdb takes most of a second (more on a busy machine; a copy takes a
//! tenth of that), so its result is kept as a template and copied
//! (`cp -a`) for every server. The template lives in the system temp dir
//! under a name that says which major version and recipe made it, so it is
//! shared by every test process (nextest runs each test in a process of its
//! own, where a per-process cache would never be hit) and there is only
//! ever one of it per user. It is built in a staging dir and renamed into
//! place, so a reader never sees half of one.
//!
//! PostgreSQL refuses to run as root. When the tests do, every PostgreSQL
//! (and Patroni) process runs as the `postgres` system user that Debian's
//! package creates, and the temp dirs are handed to that user. The uid is
//! switched in the spawned child itself (not with `runuser`, which stays as
//! a parent process) so the pid the test kit holds is the server's own.
//!
//! [`PostgresServer::start_tls`] starts one that takes TCP connections over
//! TLS only (`ssl=on`, a certificate from [`crate::tls::TestCerts`], a
//! `pg_hba.conf` of `hostssl` lines); the test kit itself then reaches it
//! over its unix socket.
//!
//! The binaries are Debian's `postgresql-15` (`/usr/lib/postgresql/15/bin`);
//! a missing one fails the test with an install hint, never skips it.
//! `postgres`'s output goes to `postgres.log` in the server's temp dir and
//! is quoted when start-up fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{Pid, Signal};

use crate::free_port;
use crate::tls::TestCerts;

/// Where Debian's `postgresql-15` puts the server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// How to get the server binaries.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install postgresql-15` (or run scripts/install-patroni.sh)";

/// How long a server may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts at finding a port nobody grabs between choosing and binding.
const START_ATTEMPTS: usize = 3;

/// Names the template data dir; bump it when `build_template` changes.
const TEMPLATE_RECIPE: &str = "pg15-v1";

/// A running (or killed) PostgreSQL with a fixed port and data dir, killed
/// on drop.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    /// TLS only: the server's own copies of its certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl PostgresServer {
    /// Starts a server on a free loopback port with a copy of the template
    /// data dir, waits until it answers a query and creates the database
    /// `courier`. Fails, saying how to install it, if PostgreSQL 15 is
    /// missing.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// [`PostgresServer::start`], TCP connections over TLS only, with the
    /// server certificate of `certs` (copied: `certs` may go).
    pub async fn start_tls(certs: &TestCerts) -> anyhow::Result<Self> {
        Self::start_with(Some(certs)).await
    }

    async fn start_with(certs: Option<&TestCerts>) -> anyhow::Result<Self> {
        let template = template().await?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&template, certs).await {
                Ok(server) => return Ok(server),
                Err(e) if attempt < START_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "postgres did not start; trying a fresh port");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once(template: &Path, certs: Option<&TestCerts>) -> anyhow::Result<Self> {
        let dir = server_dir("courier-postgres")?;
        copy_dir(template, &dir.path().join("data")).await?;
        let tls = match certs {
            Some(certs) => Some(tls_files(dir.path(), certs)?),
            None => None,
        };
        let mut server = Self {
            port: free_port()?,
            dir,
            tls,
            child: None,
        };
        server.restart().await?;
        let client = connect(&server.admin_url("postgres")).await?;
        client
            .batch_execute("CREATE DATABASE courier")
            .await
            .context("creating database courier")?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:{port}/courier`; with TLS,
    /// `?sslmode=verify-full` after it.
    pub fn url(&self) -> String {
        self.url_of("courier")
    }

    fn url_of(&self, database: &str) -> String {
        let sslmode = if self.tls.is_some() {
            "?sslmode=verify-full"
        } else {
            ""
        };
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}{sslmode}",
            self.port
        )
    }

    /// What the test kit connects to `database` with: [`Self::url_of`],
    /// or the unix socket of a TLS-only server (this kit's own connections
    /// have no TLS).
    fn admin_url(&self, database: &str) -> String {
        if self.tls.is_some() {
            format!(
                "host={} port={} user=postgres dbname={database}",
                self.dir.path().display(),
                self.port
            )
        } else {
            self.url_of(database)
        }
    }

    /// Creates database `name` on this server; returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let admin = connect(&self.admin_url("courier")).await?;
        // A name is an identifier, never a parameter: quote it.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        admin
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(self.url_of(name))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id, or `None` while killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the postmaster and every backend (SIGKILL to its process
    /// group) and reaps it. The data dir is kept, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `process_group(0)` at spawn: the group's id is the postmaster's.
            kill_groups(&[child.id()]);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data dir (killing it
    /// first if it runs) and waits until it answers a query.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = Some(self.spawn()?);
        if let Err(e) = self.wait_ready().await {
            self.kill();
            return Err(e.context(format!(
                "postgres did not start; its log:\n{}",
                crate::log_tail(&self.log_path(), 30)
            )));
        }
        Ok(())
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let postgres = pg_binary("postgres")?;
        let log_path = self.log_path();
        let log = crate::append_log(&log_path)?;
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "fsync=off"])
            .args(["-c", "shared_buffers=32MB"])
            .args(["-c", "logging_collector=off"]);
        if let Some((cert, key)) = &self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()))
                .arg("-c")
                .arg(format!(
                    "hba_file={}",
                    self.dir.path().join(TLS_HBA).display()
                ));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so a kill reaches every backend.
            .process_group(0);
        as_server_user(&mut cmd, self.dir.path())?;
        cmd.spawn()
            .with_context(|| format!("starting {}", postgres.display()))
    }

    /// Polls `SELECT 1` until it answers, failing if the postmaster exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = self.admin_url("postgres");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("postgres exited early with {status}");
                }
            }
            if let Ok(client) = connect(&url).await {
                if client.simple_query("SELECT 1").await.is_ok() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "postgres did not answer on port {} within {START_TIMEOUT:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `pg_hba.conf` of a TLS-only server, in its temp dir.
const TLS_HBA: &str = "pg_hba_tls.conf";

/// Copies the server certificate and key of `certs` into `dir` (a key must
/// be the server user's own, unreadable to others), and writes the
/// `pg_hba.conf` of a TLS-only server: TCP over TLS, or the unix socket.
fn tls_files(dir: &Path, certs: &TestCerts) -> anyhow::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let hba = dir.join(TLS_HBA);
    std::fs::copy(&certs.cert, &cert).context("copying the server certificate")?;
    std::fs::copy(&certs.key, &key).context("copying the server key")?;
    std::fs::write(
        &hba,
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostssl all all ::1/128 trust\n",
    )
    .context("writing pg_hba.conf")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    if let Some((uid, gid)) = server_user()? {
        for file in [&cert, &key, &hba] {
            std::os::unix::fs::chown(file, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to the postgres user", file.display()))?;
        }
    }
    Ok((cert, key))
}

/// Connects to `url` (without TLS) and drives the connection on a task of
/// its own; the attempt is bounded by a few seconds.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .with_context(|| format!("connecting to {url}: no answer within {CONNECT_TIMEOUT:?}"))?
    .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The path of a PostgreSQL 15 binary, or an error with the install hint.
pub(crate) fn pg_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(PG_BIN).join(name);
    if !path.is_file() {
        bail!("`{}` is not installed; {INSTALL_HINT}", path.display());
    }
    Ok(path)
}

/// The uid and gid PostgreSQL runs as when the tests run as root, `None`
/// when they do not (then it runs as the current user).
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    match ids {
        Some(ids) => Ok(Some(ids)),
        None => bail!(
            "running as root, PostgreSQL must run as the `postgres` user, which does not \
             exist; {INSTALL_HINT}"
        ),
    }
}

/// Makes `cmd` run as the PostgreSQL user (see [`server_user`]), with `home`
/// as its home and working directory.
pub(crate) fn as_server_user(cmd: &mut Command, home: &Path) -> anyhow::Result<()> {
    cmd.current_dir(home).env("HOME", home);
    if let Some((uid, gid)) = server_user()? {
        cmd.uid(uid).gid(gid);
    }
    Ok(())
}

/// A fresh temp dir that the PostgreSQL user owns.
pub(crate) fn server_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .with_context(|| format!("creating a temp dir for {prefix}"))?;
    if let Some((uid, gid)) = server_user()? {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .with_context(|| format!("handing {} to the postgres user", dir.path().display()))?;
    }
    Ok(dir)
}

/// How long a killed process group may take to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// SIGKILLs every process group in `groups`, then waits (boundedly) until
/// none of them has a live member: a dead backend has released the shared
/// memory a restarted postmaster checks. Never signals the group of init or
/// our own, whatever a caller passes.
pub(crate) fn kill_groups(groups: &[u32]) {
    let ours = rustix::process::getpgid(None)
        .ok()
        .map(|pid| pid.as_raw_nonzero().get().unsigned_abs());
    let mut groups: Vec<u32> = groups
        .iter()
        .copied()
        .filter(|group| *group > 1 && Some(*group) != ours)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for group in &groups {
        if let Some(pid) = i32::try_from(*group).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while Instant::now() < deadline && processes().any(|p| p.is_live() && groups.contains(&p.group))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process groups of every live process of the PostgreSQL user that
/// runs on `data_dir`: the postmaster (an argument names the data dir; its
/// backends are in its group) and tools such as `pg_basebackup` or
/// `pg_rewind`.
pub(crate) fn groups_on(data_dir: &Path) -> Vec<u32> {
    let uid = match server_user() {
        Ok(Some((uid, _))) => uid,
        _ => rustix::process::geteuid().as_raw(),
    };
    processes()
        .filter(|p| p.is_live() && p.uid() == Some(uid) && p.runs_on(data_dir))
        .map(|p| p.group)
        .collect()
}

/// The pid of the postmaster running on `data_dir`, from the first line of
/// its `postmaster.pid`, if that process is alive and really runs on that
/// data dir (a stale file's pid may since have gone to another process).
pub(crate) fn live_postmaster(data_dir: &Path) -> Option<u32> {
    let pidfile = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = pidfile.lines().next()?.trim().parse().ok()?;
    let process = Process::read(pid)?;
    (process.is_live() && process.runs_on(data_dir)).then_some(pid)
}

/// One entry of `/proc`.
struct Process {
    pid: u32,
    state: char,
    group: u32,
}

impl Process {
    fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and ')'.
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let _parent = fields.next()?;
        let group = fields.next()?.parse().ok()?;
        Some(Self { pid, state, group })
    }

    /// Not yet exited (a zombie has: it only waits to be reaped).
    fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }

    /// The owner of its `/proc` entry: its effective uid.
    fn uid(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{}", self.pid))
            .ok()
            .map(|meta| meta.uid())
    }

    /// Whether an argument of its command line is (or ends with, as in
    /// `--pgdata=DIR`) `data_dir`.
    fn runs_on(&self, data_dir: &Path) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        let data_dir = data_dir.as_os_str().as_encoded_bytes();
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.ends_with(data_dir))
    }
}

/// Every process in `/proc` right now.
fn processes() -> impl Iterator<Item = Process> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(Process::read)
}

/// `cp -a from to`.
async fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .await
        .context("running cp")?;
    if !out.status.success() {
        bail!(
            "cp -a {} {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The shared initdb'd template data dir, built on first use.
async fn template() -> anyhow::Result<PathBuf> {
    static TEMPLATE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    TEMPLATE.get_or_try_init(build_template).await.cloned()
}

/// Builds the template unless an earlier process did: initdb in a staging
/// dir, then a rename into place (atomic; a racing builder's rename fails
/// and it uses the winner's).
async fn build_template() -> anyhow::Result<PathBuf> {
    let initdb = pg_binary("initdb")?;
    let euid = rustix::process::geteuid().as_raw();
    let path = std::env::temp_dir().join(format!("courier-testkit-{TEMPLATE_RECIPE}-uid{euid}"));
    if path.join("PG_VERSION").is_file() {
        return Ok(path);
    }
    let staging = server_dir("courier-postgres-template")?;
    let data = staging.path().join("data");
    let mut cmd = Command::new(&initdb);
    cmd.arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        // Synced (a tenth of a second more): the template outlives this
        // process, and half-written files after a power cut would break
        // every later server.
        .arg("--no-instructions");
    as_server_user(&mut cmd, staging.path())?;
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .with_context(|| format!("running {}", initdb.display()))?;
    if !out.status.success() {
        bail!(
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Err(e) = std::fs::rename(&data, &path) {
        if !path.join("PG_VERSION").is_file() {
            return Err(e).with_context(|| format!("moving the template to {}", path.display()));
        }
    }
    Ok(path)
}
