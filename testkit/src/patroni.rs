//! A real Patroni-managed PostgreSQL 15 replication group for tests: the
//! shape a sharded, highly available store runs in production, small enough
//! that several run at once on a two-core machine.
//!
//! [`PatroniShard::start`] starts N nodes of one Patroni cluster (a
//! "scope"), each a Patroni process that runs its own PostgreSQL on free
//! loopback ports, all sharing the given [`EtcdServer`] through Patroni's
//! `etcd3` DCS. It returns once one node is the writable leader, every
//! other node streams from it, one of them synchronously, and the database
//! `courier` exists on all of them. Synchronous mode means a commit the
//! leader acknowledged is on two nodes, so the failover a test provokes
//! with [`kill_node`](PatroniShard::kill_node) (SIGKILL to the node's
//! Patroni and to its PostgreSQL: the node dies as a machine would) loses
//! nothing acknowledged.
//!
//! Failover is as fast as Patroni allows: `ttl` 20 s, the life of the
//! leader's lease in etcd, which a dead leader stops renewing; `loop_wait`
//! 1 s; `retry_timeout` 3 s. These are Patroni 4.1's minimums: its config
//! schema rejects smaller ones and at run time it raises them to these
//! (with a warning), keeping `loop_wait + 2 * retry_timeout <= ttl`. A
//! standby watches the leader key and takes over as soon as the lease
//! expires, so a failover takes about `ttl`: 20 to 21 seconds here. `use_pg_rewind` lets a killed leader come back with
//! [`start_node`](PatroniShard::start_node) as a standby of the new one.
//!
//! Every node's config (`patroni.yml`, written as JSON, which YAML reads)
//! and log (`patroni.log`, PostgreSQL's output included) are in the node's
//! temp dir; start-up failures quote the logs' tails. Dropping the shard
//! kills every Patroni and PostgreSQL it started: PostgreSQL runs detached
//! from Patroni (its own session), so it is found by its data dir.
//!
//! Patroni is looked up on the PATH, then in `/opt/courier-patroni`; a
//! missing one fails the test with "run scripts/install-patroni.sh", never
//! skips it. As for [`crate::postgres`], when the tests run as root Patroni
//! runs as the `postgres` user.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{Pid, Signal};
use serde_json::json;

use crate::etcd::EtcdServer;
use crate::postgres::{
    as_server_user, connect, groups_on, kill_groups, live_postmaster, pg_binary, server_dir, PG_BIN,
};
use crate::{free_port, http_get};

/// How to get Patroni.
pub const INSTALL_HINT: &str = "run scripts/install-patroni.sh";

/// Where scripts/install-patroni.sh puts Patroni.
const INSTALLED_PATRONI: &str = "/opt/courier-patroni/bin/patroni";

/// The leader lease in etcd, in seconds: Patroni's minimum.
pub const TTL_SECS: u64 = 20;
/// Seconds between two runs of Patroni's HA loop: Patroni's minimum.
pub const LOOP_WAIT_SECS: u64 = 1;
/// How long Patroni retries DCS and PostgreSQL operations: Patroni's
/// minimum.
pub const RETRY_TIMEOUT_SECS: u64 = 3;

/// How long a whole shard may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a restarted node may take to stream again (pg_rewind and
/// crash recovery included).
const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one probe of a node (REST call, query) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Attempts at finding ports nobody grabs between choosing and binding.
const START_ATTEMPTS: usize = 3;

/// A running Patroni cluster of N nodes, every process killed on drop.
#[derive(Debug)]
pub struct PatroniShard {
    nodes: Vec<Node>,
}

impl PatroniShard {
    /// Starts `nodes` (at least 2) Patroni nodes of cluster `scope`, with
    /// `etcd` as their DCS, and waits until one is the writable leader with
    /// every other node streaming from it, one synchronously, and the
    /// database `courier` on all of them. "Synchronously" includes Patroni
    /// having recorded the synchronous standby in etcd: only a recorded one
    /// may be promoted, so before that a dead leader would not be replaced.
    /// `scope` names the cluster in etcd: two shards on one etcd need two.
    ///
    /// Fails, saying how to install it, if Patroni or PostgreSQL 15 is
    /// missing.
    pub async fn start(etcd: &EtcdServer, scope: &str, nodes: usize) -> anyhow::Result<Self> {
        if nodes < 2 {
            bail!("a Patroni shard needs at least 2 nodes, not {nodes}");
        }
        let program = find_patroni()?;
        pg_binary("postgres")?;
        let mut attempt = 1;
        loop {
            // A failed attempt may have left its cluster in etcd; the next
            // one keeps its keys apart.
            let namespace = format!("/courier-testkit-{attempt}/");
            match Self::start_once(&program, etcd, &namespace, scope, nodes).await {
                Ok(shard) => return Ok(shard),
                Err((e, true)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "Patroni shard did not start; trying fresh ports");
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One start; on failure, the error and whether it was a port taken by
    /// someone else (worth another attempt).
    async fn start_once(
        program: &Path,
        etcd: &EtcdServer,
        namespace: &str,
        scope: &str,
        count: usize,
    ) -> Result<Self, (anyhow::Error, bool)> {
        let mut shard =
            Self::configure(program, etcd, namespace, scope, count).map_err(|e| (e, false))?;
        let ready = match shard.spawn_all() {
            Ok(()) => shard.until_ready().await,
            Err(e) => Err(e),
        };
        match ready {
            Ok(()) => Ok(shard),
            Err(e) => {
                let port_taken = shard.nodes.iter().any(|node| {
                    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                    log.contains("Address already in use")
                });
                let e = e.context(format!(
                    "Patroni shard {scope} did not start{}",
                    shard.logs()
                ));
                Err((e, port_taken))
            }
        }
    }

    /// Picks the ports, makes every node's dir and writes its config.
    fn configure(
        program: &Path,
        etcd: &EtcdServer,
        namespace: &str,
        scope: &str,
        count: usize,
    ) -> anyhow::Result<Self> {
        let mut taken = HashSet::new();
        let mut port = || -> anyhow::Result<u16> {
            loop {
                let port = free_port()?;
                if taken.insert(port) {
                    return Ok(port);
                }
            }
        };
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let node = Node {
                program: program.to_path_buf(),
                name: format!("node{i}"),
                pg_port: port()?,
                rest_port: port()?,
                dir: server_dir("courier-patroni")?,
                patroni: None,
            };
            let config = node.config(etcd.addr(), namespace, scope);
            std::fs::write(node.config_path(), serde_json::to_vec_pretty(&config)?)
                .with_context(|| format!("writing {}", node.config_path().display()))?;
            nodes.push(node);
        }
        Ok(Self { nodes })
    }

    fn spawn_all(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.spawn()?;
        }
        Ok(())
    }

    /// Waits until every node streams from a writable leader, then creates
    /// `courier` and waits until every node has replayed it.
    async fn until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let leader = self.until_streaming(&all, deadline).await?;
        let client = connect(&self.nodes[leader].url("postgres")).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = 'courier'", &[])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute("CREATE DATABASE courier")
                .await
                .context("creating database courier")?;
        }
        let created: String = client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await?
            .get(0);
        loop {
            // Replay, not only flush: a test may read a standby at once.
            let behind: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication \
                     WHERE replay_lsn IS NULL OR replay_lsn < $1::text::pg_lsn",
                    &[&created],
                )
                .await?
                .get(0);
            if behind == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the standbys did not replay `CREATE DATABASE courier` within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One URL of every node, libpq's multi-host form:
    /// `postgres://postgres@127.0.0.1:p1,127.0.0.1:p2/courier`. Add
    /// `?target_session_attrs=read-write` to reach the leader.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.pg_port))
            .collect();
        format!("postgres://postgres@{}/courier", hosts.join(","))
    }

    /// `postgres://postgres@127.0.0.1:{port of node i}/courier`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url("courier")
    }

    /// The PostgreSQL port of node `i`.
    pub fn node_port(&self, i: usize) -> u16 {
        self.nodes[i].pg_port
    }

    /// How many nodes the shard has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a shard has at least two nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node Patroni names the leader right now (its REST API answers
    /// `GET /primary` with 200), if any. A node that does not answer is not
    /// the leader.
    pub async fn leader(&self) -> anyhow::Result<Option<usize>> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.patroni.is_some() && node.is_primary().await {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Waits until a node is the leader and takes a write (a transaction
    /// that commits, so it waits for the synchronous standby if Patroni
    /// still names one), and returns it.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await? {
                if self.nodes[i].takes_writes().await {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no node of the shard became a writable leader within {timeout:?}{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills node `i` as a machine's death would: SIGKILL to its Patroni
    /// and to its PostgreSQL (postmaster and backends) at once. Its data
    /// dir is kept for [`start_node`](Self::start_node).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i`'s Patroni again with its config and data dir (after
    /// [`kill_node`](Self::kill_node)) and waits until the node streams from
    /// the leader as a standby, rewound if it was the leader before.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].patroni.is_some() {
            bail!("node {i} runs already");
        }
        self.nodes[i].spawn()?;
        let deadline = Instant::now() + REJOIN_TIMEOUT;
        match self.until_streaming(&[i], deadline).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.context(format!("node {i} did not rejoin{}", self.logs()))),
        }
    }

    /// Holds standby `i` behind: its startup process, the one that replays
    /// WAL, is stopped (SIGSTOP). What the leader commits is still received
    /// and flushed, so a synchronous commit is not held up, but nothing new
    /// becomes visible on the standby and its replay lag grows until
    /// [`release_replay`](Self::release_replay). Pausing replay with
    /// `pg_wal_replay_pause()` would not do: Patroni resumes a paused replay
    /// by itself within a loop.
    pub async fn hold_replay(&self, i: usize) -> anyhow::Result<()> {
        self.signal_replay(i, Signal::STOP).await
    }

    /// Lets standby `i` replay again (SIGCONT to its startup process).
    pub async fn release_replay(&self, i: usize) -> anyhow::Result<()> {
        self.signal_replay(i, Signal::CONT).await
    }

    async fn signal_replay(&self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let client = connect(&self.nodes[i].url("postgres")).await?;
        let row = client
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'",
                &[],
            )
            .await
            .with_context(|| format!("node {i} has no startup process (is it a standby?)"))?;
        let pid: i32 = row.get(0);
        let pid = Pid::from_raw(pid).with_context(|| format!("startup pid {pid}"))?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("signalling node {i}'s startup process"))?;
        Ok(())
    }

    /// The pids of node `i`'s Patroni and of its postmaster, for status
    /// output; `None` for what does not run.
    pub fn pids(&self, i: usize) -> (Option<u32>, Option<u32>) {
        let node = &self.nodes[i];
        (
            node.patroni.as_ref().map(Child::id),
            live_postmaster(&node.data_dir()),
        )
    }

    /// Waits until a leader exists and each of `nodes` (other than the
    /// leader) streams from it, with a synchronous standby in place;
    /// returns the leader. Fails early when a Patroni exits.
    async fn until_streaming(
        &mut self,
        nodes: &[usize],
        deadline: Instant,
    ) -> anyhow::Result<usize> {
        let mut seen = String::from("no leader");
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                node.check_alive().with_context(|| format!("node {i}"))?;
            }
            if let Some(leader) = self.leader().await? {
                match self.replication(leader, nodes).await {
                    Ok(None) if self.sync_standby_in_dcs(leader).await => return Ok(leader),
                    Ok(None) => {
                        seen = format!(
                            "leader node {leader}: a synchronous standby streams, \
                             but Patroni has not recorded it in etcd yet"
                        )
                    }
                    Ok(Some(state)) => seen = format!("leader node {leader}: {state}"),
                    Err(e) => seen = format!("leader node {leader}: {e:#}"),
                }
            }
            if Instant::now() > deadline {
                bail!("the shard was not streaming in time; last seen: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `None` if each of `nodes` streams from `leader` and a synchronous
    /// standby is in place; else what the leader reports instead.
    async fn replication(&self, leader: usize, nodes: &[usize]) -> anyhow::Result<Option<String>> {
        let client = connect(&self.nodes[leader].url("postgres")).await?;
        let probe = async {
            let standbys = client
                .query_one("SHOW synchronous_standby_names", &[])
                .await?
                .get::<_, String>(0);
            let rows = client
                .query(
                    "SELECT application_name, state, sync_state FROM pg_stat_replication",
                    &[],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>((standbys, rows))
        };
        let (standbys, rows) = tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .context("the leader did not answer")??;
        let rows: Vec<(String, String, String)> = rows
            .iter()
            .map(|row| {
                (
                    row.get::<_, Option<String>>(0).unwrap_or_default(),
                    row.get::<_, Option<String>>(1).unwrap_or_default(),
                    row.get::<_, Option<String>>(2).unwrap_or_default(),
                )
            })
            .collect();
        let streams = |name: &str| {
            rows.iter()
                .any(|(app, state, _)| app == name && state == "streaming")
        };
        let all_stream = nodes
            .iter()
            .filter(|i| **i != leader)
            .all(|i| streams(&self.nodes[*i].name));
        let sync = !standbys.is_empty()
            && rows.iter().any(|(_, state, sync)| {
                state == "streaming" && (sync == "sync" || sync == "quorum")
            });
        Ok((!(all_stream && sync)).then(|| {
            format!("synchronous_standby_names = {standbys:?}, pg_stat_replication = {rows:?}")
        }))
    }

    /// Whether Patroni's `/sync` key in etcd names a standby of `leader`
    /// (that node's REST API answers `GET /sync` with 200). PostgreSQL
    /// streams synchronously a loop before Patroni records it, and only a
    /// recorded synchronous standby may be promoted: until then the death
    /// of the leader leaves the shard without one.
    async fn sync_standby_in_dcs(&self, leader: usize) -> bool {
        for (i, node) in self.nodes.iter().enumerate() {
            if i != leader && node.patroni.is_some() && node.is_sync_standby().await {
                return true;
            }
        }
        false
    }

    /// The tail of every node's log, for an error.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                format!(
                    "\n--- {} ({}) ---\n{}",
                    node.name,
                    node.log_path().display(),
                    crate::log_tail(&node.log_path(), 40)
                )
            })
            .collect()
    }
}

impl Drop for PatroniShard {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// One Patroni with its PostgreSQL: fixed ports and a temp dir holding the
/// config, the log and the data dir.
#[derive(Debug)]
struct Node {
    program: PathBuf,
    name: String,
    pg_port: u16,
    rest_port: u16,
    dir: tempfile::TempDir,
    patroni: Option<Child>,
}

impl Node {
    /// The Patroni config: the fastest failover Patroni accepts,
    /// synchronous replication, trust on loopback, a small footprint.
    fn config(&self, etcd: SocketAddr, namespace: &str, scope: &str) -> serde_json::Value {
        let rest = format!("127.0.0.1:{}", self.rest_port);
        let pg = format!("127.0.0.1:{}", self.pg_port);
        json!({
            "scope": scope,
            "namespace": namespace,
            "name": self.name,
            "log": { "level": "INFO" },
            "restapi": { "listen": rest, "connect_address": rest },
            "etcd3": { "host": etcd.to_string() },
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_SECS,
                    "loop_wait": LOOP_WAIT_SECS,
                    "retry_timeout": RETRY_TIMEOUT_SECS,
                    "maximum_lag_on_failover": 1_048_576,
                    "synchronous_mode": true,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "use_slots": true,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "max_connections": 50,
                            "shared_buffers": "32MB",
                        },
                    },
                },
                "initdb": [{ "encoding": "UTF8" }, { "locale": "C" }],
            },
            "postgresql": {
                "listen": pg,
                "connect_address": pg,
                "data_dir": self.data_dir(),
                "bin_dir": PG_BIN,
                "pgpass": self.dir.path().join("pgpass"),
                "authentication": {
                    "superuser": { "username": "postgres" },
                    "replication": { "username": "replicator", "password": "replicator" },
                },
                "parameters": { "unix_socket_directories": self.dir.path() },
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("patroni.yml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("patroni.log")
    }

    fn rest_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.rest_port))
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.pg_port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = crate::append_log(&log_path)?;
        let mut cmd = Command::new(&self.program);
        cmd.arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so a kill reaches its helpers too.
            .process_group(0);
        as_server_user(&mut cmd, self.dir.path())?;
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.patroni = Some(child);
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.patroni.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.patroni = None;
                bail!("Patroni exited early with {status}");
            }
        }
        Ok(())
    }

    /// SIGKILLs Patroni (and its helpers) and every PostgreSQL process on
    /// the data dir, then removes a `postmaster.pid` left behind: its pid is
    /// dead, as after a reboot, but may still be a zombie waiting for init,
    /// which PostgreSQL would take for a live postmaster.
    fn kill(&mut self) {
        let mut groups = groups_on(&self.data_dir());
        if let Some(child) = &self.patroni {
            // `process_group(0)` at spawn: the group's id is Patroni's pid.
            groups.push(child.id());
        }
        kill_groups(&groups);
        if let Some(mut child) = self.patroni.take() {
            let _ = child.wait();
        }
        // PostgreSQL may have started between the scan and the kill.
        kill_groups(&groups_on(&self.data_dir()));
        if live_postmaster(&self.data_dir()).is_none() {
            let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
        }
    }

    async fn is_primary(&self) -> bool {
        self.rest_ok("/primary").await
    }

    async fn is_sync_standby(&self) -> bool {
        self.rest_ok("/sync").await
    }

    /// Whether Patroni's REST API answers `GET path` with 200 in time.
    async fn rest_ok(&self, path: &str) -> bool {
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, http_get(self.rest_addr(), path)).await,
            Ok(Ok((200, _)))
        )
    }

    /// Whether PostgreSQL is out of recovery and commits a transaction
    /// (`txid_current()` takes a transaction id, so its commit waits for
    /// the synchronous standby) in time.
    async fn takes_writes(&self) -> bool {
        let probe = async {
            let client = connect(&self.url("postgres")).await?;
            let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
            if row.get::<_, bool>(0) {
                return Ok(false);
            }
            client.batch_execute("SELECT txid_current()").await?;
            Ok::<_, anyhow::Error>(true)
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            Ok(Ok(true))
        )
    }
}

/// `patroni` on the PATH, else where scripts/install-patroni.sh puts it.
fn find_patroni() -> anyhow::Result<PathBuf> {
    crate::which("patroni")
        .or_else(|_| crate::which(INSTALLED_PATRONI))
        .with_context(|| {
            format!("`patroni` is not installed (not on the PATH, not {INSTALLED_PATRONI}); {INSTALL_HINT}")
        })
}
