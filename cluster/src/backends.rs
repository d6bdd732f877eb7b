//! Chooses each backend by URL scheme and connects to it.
//!
//! A scheme whose backend was not compiled in (its cargo feature is off) is
//! refused with an error that names the feature.

use std::sync::Arc;

use crate::config::ClusterConfig;
use crate::{accounts, discovery, inbox, queue, sessions, Error, Result};
use crate::{Accounts, Discovery, Inbox, Queue, Sessions};

/// Every shared-state backend a service may need.
#[derive(Clone)]
pub struct Backends {
    pub sessions: Arc<dyn Sessions>,
    pub accounts: Arc<dyn Accounts>,
    /// Users' inboxes and rooms' histories, in the session store.
    pub inbox: Arc<dyn Inbox>,
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
#[cfg(not(all(feature = "redis", feature = "kafka", feature = "etcd")))]
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
        let Stores {
            sessions,
            accounts,
            inbox,
        } = connect_stores(config).await?;
        Ok(Self {
            sessions,
            accounts,
            inbox,
            queue: connect_queue(config).await?,
            discovery: connect_discovery(config).await?,
        })
    }
}

/// The stores behind the `sessions` URL.
pub struct Stores {
    pub sessions: Arc<dyn Sessions>,
    pub accounts: Arc<dyn Accounts>,
    pub inbox: Arc<dyn Inbox>,
}

/// The session, account and message stores (they share one URL).
pub async fn connect_stores(config: &ClusterConfig) -> Result<Stores> {
    let url = &config.sessions;
    let opts = config.session_options();
    let inbox_opts = config.inbox_options();
    match scheme(url)? {
        "memory" => Ok(Stores {
            sessions: Arc::new(sessions::memory::MemorySessions::new(opts)),
            accounts: Arc::new(accounts::memory::MemoryAccounts::default()),
            inbox: Arc::new(inbox::memory::MemoryInbox::new(inbox_opts)),
        }),
        #[cfg(feature = "redis")]
        "redis" | "redis+cluster" => {
            let conn = sessions::redis::RedisConn::connect(url).await?;
            Ok(Stores {
                sessions: Arc::new(sessions::redis::RedisSessions::new(conn.clone(), opts)),
                accounts: Arc::new(accounts::redis::RedisAccounts::new(conn.clone())),
                inbox: Arc::new(inbox::redis::RedisInbox::new(conn, inbox_opts)),
            })
        }
        #[cfg(not(feature = "redis"))]
        "redis" | "redis+cluster" => Err(not_built(url, "redis")),
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
        "kafka" => Ok(Arc::new(
            queue::kafka::KafkaQueue::connect(url, config.queue_partitions, &config.kafka).await?,
        )),
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
        "etcd" => Ok(Arc::new(
            discovery::etcd::EtcdDiscovery::connect(url, config.lease_ttl).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        "etcd" => Err(not_built(url, "etcd")),
        other => Err(Error::bad_url(url, format!("unknown discovery `{other}`"))),
    }
}
