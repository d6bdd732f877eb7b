//! Service discovery: comets and logics register themselves under a lease and
//! everyone watches.
//!
//! A registration lives under `/courier/{comets|logics}/{id}` as JSON. The
//! backend keeps its lease alive; when the process dies the lease ends and
//! the record disappears. A watcher always holds the last good view: if the
//! backend is unreachable the view is kept, and registrations are re-created
//! when it is back.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Result;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod memory;

/// Which family of services a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    Comet,
    Logic,
}

impl ServiceKind {
    /// The key prefix of this kind, e.g. `/courier/comets/`.
    pub fn prefix(self) -> &'static str {
        match self {
            ServiceKind::Comet => "/courier/comets/",
            ServiceKind::Logic => "/courier/logics/",
        }
    }
}

/// Whether a comet takes new clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Serving,
    Draining,
}

/// A comet's discovery record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CometNode {
    pub id: String,
    /// `host:port` of the TCP client listener.
    pub tcp: String,
    /// `host:port` of the WebSocket listener ("" when disabled).
    #[serde(default)]
    pub ws: String,
    /// `host:port` of the gRPC push service.
    pub grpc: String,
    pub weight: u32,
    pub connections: u32,
    #[serde(default)]
    pub state: NodeState,
}

/// A logic's discovery record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicNode {
    pub id: String,
    /// `host:port` of the gRPC service for comets.
    pub grpc: String,
    /// `host:port` of the HTTP API.
    pub http: String,
}

/// The raw view of one service kind: id -> JSON record.
pub type View = BTreeMap<String, String>;

/// Where the message store's records live: `/courier/store/<name>`.
pub const STORE_PREFIX: &str = "/courier/store/";

/// Where revoked tokens are recorded: `/courier/revoked/<name>` (see
/// `courier_runtime::revoked` for the names).
pub const REVOKED_PREFIX: &str = "/courier/revoked/";

/// A discovery backend.
#[async_trait]
pub trait Discovery: Send + Sync + 'static {
    /// Registers `value` (JSON) under `kind`'s prefix and `id`, and keeps it
    /// alive until the returned [`Registration`] is deregistered or dropped.
    async fn register(&self, kind: ServiceKind, id: &str, value: String) -> Result<Registration>;
    /// The current records of `kind`, kept up to date.
    async fn watch(&self, kind: ServiceKind) -> Result<watch::Receiver<View>>;
    /// The store's records (name under [`STORE_PREFIX`] -> value), kept up
    /// to date.
    async fn watch_store(&self) -> Result<watch::Receiver<View>>;
    /// Writes `value` as the store's record `name` if that record is still
    /// `expected` (`None`: absent); returns whether it was written.
    async fn swap_store(&self, name: &str, expected: Option<&str>, value: &str) -> Result<bool>;
    /// Records `value` as the revocation `name` (under [`REVOKED_PREFIX`])
    /// for `ttl` (at least a second), replacing one of the same name.
    async fn revoke(&self, name: &str, value: &str, ttl: std::time::Duration) -> Result<()>;
    /// The revocations in force (name -> value), kept up to date.
    async fn watch_revoked(&self) -> Result<watch::Receiver<View>>;
}

/// A live registration. Its backend task keeps the record alive and writes
/// each [`update`](Registration::update); dropping it ends the registration.
#[derive(Debug)]
pub struct Registration {
    value: watch::Sender<String>,
    cancel: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Registration {
    /// Builds a registration from a backend's keep-alive task. The task must
    /// write every new value of `value`'s receiver and, once `cancel` fires,
    /// delete the record and return.
    pub fn new(
        value: watch::Sender<String>,
        cancel: CancellationToken,
        done: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            value,
            cancel,
            done: Some(done),
        }
    }

    /// Replaces the registered record.
    pub fn update(&self, value: String) {
        self.value.send_replace(value);
    }

    /// Removes the record and waits until it is gone.
    pub async fn deregister(mut self) {
        self.cancel.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Registers a typed record.
pub async fn register_json<T: Serialize>(
    discovery: &dyn Discovery,
    kind: ServiceKind,
    id: &str,
    record: &T,
) -> Result<Registration> {
    let value = serde_json::to_string(record).map_err(|e| crate::Error::corrupt("json", e))?;
    discovery.register(kind, id, value).await
}

/// Decodes a raw view into typed records, skipping (and logging) any record
/// that does not parse, sorted by id.
pub fn decode_view<T: for<'de> Deserialize<'de>>(view: &View) -> Vec<T> {
    view.iter()
        .filter_map(|(id, json)| match serde_json::from_str(json) {
            Ok(node) => Some(node),
            Err(e) => {
                tracing::warn!(%id, error = %e, "ignoring undecodable discovery record");
                None
            }
        })
        .collect()
}

/// Comets ranked for a new client: draining ones excluded, then the least
/// loaded per unit of weight first (ties by id).
pub fn rank_comets(mut comets: Vec<CometNode>) -> Vec<CometNode> {
    comets.retain(|c| c.state == NodeState::Serving && c.weight > 0);
    comets.sort_by(|a, b| {
        // connections / weight, compared without division.
        let la = u64::from(a.connections) * u64::from(b.weight);
        let lb = u64::from(b.connections) * u64::from(a.weight);
        la.cmp(&lb).then_with(|| a.id.cmp(&b.id))
    });
    comets
}
