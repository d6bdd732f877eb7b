//! Chooses each backend by URL scheme and connects to it.
//!
//! A scheme whose backend was not compiled in (its cargo feature is off) is
//! refused with an error that names the feature. Each service connects
//! only what it uses: logic everything ([`Backends::connect`]), job the
//! queue and discovery, comet discovery alone.

use std::sync::Arc;

use crate::config::ClusterConfig;
use crate::{accounts, discovery, inbox, queue, rooms, sessions, Error, Result};
use crate::{Accounts, Discovery, Inbox, Queue, RoomRules, Sessions, StoreAdmin};

/// Every shared-state backend a service may need.
#[derive(Clone)]
pub struct Backends {
    pub sessions: Arc<dyn Sessions>,
    pub accounts: Arc<dyn Accounts>,
    /// Users' inboxes and rooms' histories, in the store of record.
    pub inbox: Arc<dyn Inbox>,
    /// Rooms' join rules and members, in the store of record.
    pub rooms: Arc<dyn RoomRules>,
    /// Operating the store of record; `None` for `memory://`.
    pub store_admin: Option<Arc<dyn StoreAdmin>>,
    pub queue: Arc<dyn Queue>,
    pub discovery: Arc<dyn Discovery>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backends(..)")
    }
}

fn scheme(url: &str) -> Result<&str> {
    url.split_once("://")
        .map(|(s, _)| s)
        .ok_or_else(|| Error::bad_url(url, "expected scheme://..."))
}

/// The error for a known scheme whose backend this build leaves out.
#[cfg(not(all(
    feature = "redis",
    feature = "postgres",
    feature = "kafka",
    feature = "etcd"
)))]
fn not_built(url: &str, feature: &str) -> Error {
    Error::bad_url(
        url,
        format!(
            "this build has no `{feature}` backend (cargo feature `{feature}` of courier-cluster)"
        ),
    )
}

impl Backends {
    /// Connects every backend named in `config`. `memory://` backends are
    /// fresh and private to the returned value: clone it to share them.
    pub async fn connect(config: &ClusterConfig) -> Result<Self> {
        let discovery = connect_discovery(config).await?;
        let Store {
            accounts,
            inbox,
            rooms,
            admin,
        } = connect_store(config, discovery.clone()).await?;
        Ok(Self {
            sessions: connect_sessions(config).await?,
            accounts,
            inbox,
            rooms,
            store_admin: admin,
            queue: connect_queue(config).await?,
            discovery,
        })
    }
}

/// The store of record: accounts and messages, and its admin handle.
pub struct Store {
    pub accounts: Arc<dyn Accounts>,
    pub inbox: Arc<dyn Inbox>,
    pub rooms: Arc<dyn RoomRules>,
    pub admin: Option<Arc<dyn StoreAdmin>>,
}

/// The store of record named by `store` or `shards`; a sharded store
/// follows its routing table in `discovery`.
pub async fn connect_store(config: &ClusterConfig, discovery: Arc<dyn Discovery>) -> Result<Store> {
    let shards = config
        .store_shards()
        .map_err(|reason| Error::bad_url(&config.store, reason))?;
    if shards.is_empty() {
        return Ok(Store {
            accounts: Arc::new(accounts::memory::MemoryAccounts::default()),
            inbox: Arc::new(inbox::memory::MemoryInbox::new(config.inbox_options())),
            rooms: Arc::new(rooms::memory::MemoryRoomRules::default()),
            admin: None,
        });
    }
    connect_postgres(config, &shards, discovery).await
}

#[cfg(feature = "postgres")]
async fn connect_postgres(
    config: &ClusterConfig,
    shards: &std::collections::BTreeMap<String, String>,
    discovery: Arc<dyn Discovery>,
) -> Result<Store> {
    let opts = crate::postgres::StoreOptions {
        inbox: config.inbox_options(),
        max_read_lag: config.max_read_lag,
        pool_size: config.store_pool_size.max(1),
        commits_in_flight: config.store_commits_in_flight.max(1),
        ..Default::default()
    };
    let writer = format!("courier-{:08x}", rand::random::<u32>());
    let tls = config.backend_tls();
    let store =
        crate::postgres::PgStore::connect_tls(shards, discovery, opts, &writer, &tls).await?;
    Ok(Store {
        accounts: store.clone(),
        inbox: store.clone(),
        rooms: store.clone(),
        admin: Some(store),
    })
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(
    _: &ClusterConfig,
    shards: &std::collections::BTreeMap<String, String>,
    _: Arc<dyn Discovery>,
) -> Result<Store> {
    let url = shards.values().next().map_or("postgres://", String::as_str);
    Err(not_built(url, "postgres"))
}

/// The session store.
pub async fn connect_sessions(config: &ClusterConfig) -> Result<Arc<dyn Sessions>> {
    let url = &config.sessions;
    let opts = config.session_options();
    match scheme(url)? {
        "memory" => Ok(Arc::new(sessions::memory::MemorySessions::new(opts))),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
            let conn = crate::redis::RedisConn::connect_tls(url, &config.backend_tls()).await?;
            Ok(Arc::new(sessions::redis::RedisSessions::new(conn, opts)))
        }
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => Err(not_built(url, "redis")),
        other => Err(Error::bad_url(
            url,
            format!("unknown session store `{other}`"),
        )),
    }
}

/// The queue.
pub async fn connect_queue(config: &ClusterConfig) -> Result<Arc<dyn Queue>> {
    let url = &config.queue;
    match scheme(url)? {
        "memory" => Ok(Arc::new(queue::memory::MemoryQueue::new(
            config.queue_partitions.max(1),
        ))),
        #[cfg(feature = "kafka")]
        "kafka" => {
            let settings = config.kafka_settings();
            if settings.get("ssl.ca.location") != config.kafka.get("ssl.ca.location") {
                // backend_ca, checked here: librdkafka's error does not
                // name the file.
                config.backend_tls().ca_pem()?;
            }
            Ok(Arc::new(
                queue::kafka::KafkaQueue::connect(url, config.queue_partitions, &settings).await?,
            ))
        }
        #[cfg(not(feature = "kafka"))]
        "kafka" => Err(not_built(url, "kafka")),
        other => Err(Error::bad_url(url, format!("unknown queue `{other}`"))),
    }
}

/// Service discovery.
pub async fn connect_discovery(config: &ClusterConfig) -> Result<Arc<dyn Discovery>> {
    let url = &config.discovery;
    match scheme(url)? {
        "memory" => Ok(Arc::new(discovery::memory::MemoryDiscovery::default())),
        #[cfg(feature = "etcd")]
        "etcd" | "etcds" => Ok(Arc::new(
            discovery::etcd::EtcdDiscovery::connect_tls(
                url,
                config.lease_ttl,
                &config.backend_tls(),
            )
            .await?,
        )),
        #[cfg(not(feature = "etcd"))]
        "etcd" | "etcds" => Err(not_built(url, "etcd")),
        other => Err(Error::bad_url(url, format!("unknown discovery `{other}`"))),
    }
}
