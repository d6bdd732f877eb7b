//! STUB: memory discovery (to be implemented).
use async_trait::async_trait;
use tokio::sync::watch;
use super::{Discovery, Registration, ServiceKind, View};
use crate::{Error, Result};
/// memory discovery.
#[derive(Debug, Default)]
pub struct MemoryDiscovery;

#[async_trait]
impl Discovery for MemoryDiscovery {
    async fn register(&self, _: ServiceKind, _: &str, _: String) -> Result<Registration> { Err(Error::Closed) }
    async fn watch(&self, _: ServiceKind) -> Result<watch::Receiver<View>> { Err(Error::Closed) }
}
