//! A real cluster for end-to-end tests: PostgreSQL, Redis, etcd and a
//! Kafka-compatible broker started by the testkit on free loopback ports,
//! and every Courier service as its own `courier` process (so a test can
//! `kill -9` one).

use std::collections::HashMap;
use std::process::Stdio;

use courier_testkit::kafka::{KafkaBroker, Storage};
use courier_testkit::postgres::PostgresServer;
use courier_testkit::{etcd::EtcdServer, redis::RedisServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::DEADLINE;

pub const API_KEY: &str = "cluster-test-api-key";
pub const JWT_SECRET: &str = "cluster-test-jwt-secret-32-bytes";
pub const CLUSTER_SECRET: &str = "cluster-test-cluster-secret-32-byte";

/// One `courier` service process.
pub struct Service {
    pub id: String,
    /// Addresses it printed: `tcp`, `grpc`, `http`, `admin`.
    pub addrs: HashMap<String, String>,
    child: Child,
}

impl Service {
    /// Whether the process still runs (it neither exited nor was killed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }
}

/// The backends and the services of one cluster.
pub struct RealCluster {
    // Fields drop in order: services go before the backends they use.
    pub logic: Service,
    pub comets: Vec<Service>,
    pub jobs: Vec<Service>,
    /// The store of record: one shard, or what `with_store` named.
    pub postgres: Option<PostgresServer>,
    /// The `store` / `shards` settings every logic gets.
    store: Vec<(String, String)>,
    /// More settings for logics spawned from now on (`COURIER_LOGIC__...`).
    pub logic_env: Vec<(String, String)>,
    pub redis: RedisServer,
    pub etcd: EtcdServer,
    pub kafka: KafkaBroker,
    topic: String,
}

impl RealCluster {
    /// Backends (a one-shard PostgreSQL store), one logic, comets
    /// `comet-a`, `comet-b`, and two jobs.
    pub async fn start() -> Self {
        Self::start_with_broker(Storage::Memory).await
    }

    /// The same with the broker keeping its log in `storage`.
    pub async fn start_with_broker(storage: Storage) -> Self {
        let postgres = PostgresServer::start().await.expect("postgres starts");
        let store = vec![("COURIER_CLUSTER__STORE".to_owned(), postgres.url())];
        let etcd = EtcdServer::start().await.expect("etcd starts");
        Self::start_with(etcd, Some(postgres), store, storage).await
    }

    /// The same on `etcd`, with the store of record set by `store` (env
    /// settings such as `COURIER_CLUSTER__SHARDS__A=postgres://...`).
    pub async fn start_on(
        etcd: EtcdServer,
        postgres: Option<PostgresServer>,
        store: Vec<(String, String)>,
    ) -> Self {
        Self::start_with(etcd, postgres, store, Storage::Memory).await
    }

    async fn start_with(
        etcd: EtcdServer,
        postgres: Option<PostgresServer>,
        store: Vec<(String, String)>,
        broker: Storage,
    ) -> Self {
        let redis = RedisServer::start().await.expect("redis-server starts");
        let kafka = KafkaBroker::start_with(broker)
            .await
            .expect("broker starts");
        let topic = "courier-e2e".to_owned();
        let mut cluster = Self {
            postgres,
            store,
            logic_env: Vec::new(),
            redis,
            etcd,
            kafka,
            topic,
            logic: placeholder(),
            comets: Vec::new(),
            jobs: Vec::new(),
        };
        cluster.logic = cluster.spawn("logic", "logic-1").await;
        for id in ["comet-a", "comet-b"] {
            let comet = cluster.spawn("comet", id).await;
            cluster.comets.push(comet);
        }
        for id in ["job-1", "job-2"] {
            let job = cluster.spawn("job", id).await;
            cluster.jobs.push(job);
        }
        cluster
    }

    /// Base URL of the current logic's HTTP API.
    pub fn logic_url(&self) -> String {
        format!("http://{}", self.logic.addrs["http"])
    }

    /// Starts a `courier <role>` process with id `id` on port 0 everywhere.
    pub async fn spawn(&self, role: &str, id: &str) -> Service {
        let section = role.to_uppercase();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier"));
        cmd.arg(role)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("TEST_COURIER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env("COURIER_AUTH__API_KEY", API_KEY)
            .env("COURIER_AUTH__JWT_SECRET", JWT_SECRET)
            .env("COURIER_AUTH__CLUSTER_SECRET", CLUSTER_SECRET)
            .env("COURIER_CLUSTER__SESSIONS", self.redis.url())
            .env("COURIER_CLUSTER__QUEUE", self.kafka.url(&self.topic))
            .env("COURIER_CLUSTER__DISCOVERY", self.etcd.url())
            .env("COURIER_CLUSTER__LEASE_TTL", "2s")
            .env("COURIER_CLUSTER__QUEUE_PARTITIONS", "4")
            .env(format!("COURIER_{section}__ID"), id);
        match role {
            "comet" => {
                cmd.env("COURIER_COMET__TCP_ADDR", "127.0.0.1:0")
                    .env("COURIER_COMET__WS_ADDR", "127.0.0.1:0")
                    .env("COURIER_COMET__GRPC_ADDR", "127.0.0.1:0")
                    .env("COURIER_COMET__ADMIN_ADDR", "127.0.0.1:0")
                    .env("COURIER_COMET__REPORT_INTERVAL", "200ms")
                    // Clients learn of a message that never reached them
                    // from the heartbeat reply: keep that quick.
                    .env("COURIER_COMET__HEARTBEAT", "2s");
            }
            "logic" => {
                cmd.envs(self.store.iter().map(|(k, v)| (k, v)));
                cmd.envs(self.logic_env.iter().map(|(k, v)| (k, v)));
                cmd.env("COURIER_LOGIC__HTTP_ADDR", "127.0.0.1:0")
                    .env("COURIER_LOGIC__GRPC_ADDR", "127.0.0.1:0")
                    .env("COURIER_LOGIC__ADMIN_ADDR", "127.0.0.1:0")
                    .env("COURIER_LOGIC__AUTH_RATE_PER_MINUTE", "100000");
            }
            "job" => {
                cmd.env("COURIER_JOB__ADMIN_ADDR", "127.0.0.1:0");
            }
            _ => {}
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn courier");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // First line: "<role> <id> <name> <addr> <name> <addr>..."
        let first = tokio::time::timeout(DEADLINE * 3, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{role} {id} did not start"))
            .expect("read stdout")
            .unwrap_or_else(|| panic!("{role} {id} exited at start"));
        let words: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(words.first(), Some(&role), "unexpected banner {first:?}");
        let addrs = words[2..]
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Service {
            id: words[1].to_owned(),
            addrs,
            child,
        }
    }
}

/// `GET /api/v1{path}` of logic at `url` with the API key: the JSON body.
pub async fn api_get(url: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{url}/api/v1{path}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("logic answers")
        .json()
        .await
        .expect("a JSON body")
}

fn placeholder() -> Service {
    Service {
        id: String::new(),
        addrs: HashMap::new(),
        child: Command::new("true").spawn().expect("spawn true"),
    }
}
