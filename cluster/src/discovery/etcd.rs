//! STUB: etcd discovery (to be implemented).
use async_trait::async_trait;
use tokio::sync::watch;
use super::{Discovery, Registration, ServiceKind, View};
use crate::{Error, Result};
/// etcd discovery.
#[derive(Debug, Default)]
pub struct EtcdDiscovery;
impl EtcdDiscovery { /// Connects.
    pub async fn connect(_url: &str, _lease: std::time::Duration) -> Result<Self> { Err(Error::Closed) } }
#[async_trait]
impl Discovery for EtcdDiscovery {
    async fn register(&self, _: ServiceKind, _: &str, _: String) -> Result<Registration> { Err(Error::Closed) }
    async fn watch(&self, _: ServiceKind) -> Result<watch::Receiver<View>> { Err(Error::Closed) }
}
