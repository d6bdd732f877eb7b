//! In-process discovery: the `memory://` backend of `courier up` and tests.
//!
//! Each [`ServiceKind`] has one `watch` channel holding the whole [`View`];
//! watchers are plain subscribers, so a new watcher sees the current view
//! at once and every change is one `send_modify`.
//!
//! A registration is a small task that applies [`Registration::update`]s and
//! removes its entry when cancelled. Registering an id that already exists
//! replaces the record; from then on the older registration is *stale*: its
//! updates and its removal are ignored, so a restarted service that
//! re-registered is never erased by its predecessor going away. Staleness
//! is tracked with a per-id generation number kept beside the view.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Discovery, Registration, ServiceKind, View};
use crate::Result;

/// Discovery kept in this process's memory. Clones are not needed: share it
/// behind an `Arc<dyn Discovery>`.
#[derive(Debug, Default)]
pub struct MemoryDiscovery {
    comets: Arc<Directory>,
    logics: Arc<Directory>,
    /// The store's records; written only by compare-and-swap.
    store: Directory,
    /// Revocations, each removed when its time is up.
    revoked: Arc<Directory>,
}

impl MemoryDiscovery {
    fn directory(&self, kind: ServiceKind) -> &Arc<Directory> {
        match kind {
            ServiceKind::Comet => &self.comets,
            ServiceKind::Logic => &self.logics,
        }
    }
}

/// The records of one kind plus who owns each id.
#[derive(Debug)]
struct Directory {
    view: watch::Sender<View>,
    /// id -> generation of the registration that currently owns it.
    owners: Mutex<HashMap<String, u64>>,
    next_generation: Mutex<u64>,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            view: watch::Sender::new(View::new()),
            owners: Mutex::new(HashMap::new()),
            next_generation: Mutex::new(0),
        }
    }
}

impl Directory {
    /// Makes a new generation the owner of `id` and returns it.
    fn claim(&self, id: &str) -> u64 {
        let generation = {
            let mut next = self.next_generation.lock();
            *next += 1;
            *next
        };
        self.owners.lock().insert(id.to_owned(), generation);
        generation
    }

    /// Writes `value` for `id` if `generation` still owns it.
    fn put(&self, id: &str, generation: u64, value: String) {
        let owners = self.owners.lock();
        if owners.get(id) == Some(&generation) {
            self.view.send_if_modified(|view| {
                if view.get(id) == Some(&value) {
                    return false;
                }
                view.insert(id.to_owned(), value);
                true
            });
        }
    }

    /// Removes `id` if `generation` still owns it.
    fn remove(&self, id: &str, generation: u64) {
        let mut owners = self.owners.lock();
        if owners.get(id) == Some(&generation) {
            owners.remove(id);
            self.view.send_if_modified(|view| view.remove(id).is_some());
        }
    }
}

#[async_trait]
impl Discovery for MemoryDiscovery {
    async fn register(&self, kind: ServiceKind, id: &str, value: String) -> Result<Registration> {
        let directory = Arc::clone(self.directory(kind));
        let generation = directory.claim(id);
        directory.put(id, generation, value.clone());

        let (value_tx, mut value_rx) = watch::channel(value);
        let cancel = CancellationToken::new();
        let id = id.to_owned();
        let done = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        changed = value_rx.changed() => {
                            if changed.is_err() {
                                break; // the Registration is gone
                            }
                            let value = value_rx.borrow_and_update().clone();
                            directory.put(&id, generation, value);
                        }
                    }
                }
                directory.remove(&id, generation);
            }
        });
        Ok(Registration::new(value_tx, cancel, done))
    }

    async fn watch(&self, kind: ServiceKind) -> Result<watch::Receiver<View>> {
        Ok(self.directory(kind).view.subscribe())
    }

    async fn watch_store(&self) -> Result<watch::Receiver<View>> {
        Ok(self.store.view.subscribe())
    }

    async fn swap_store(&self, name: &str, expected: Option<&str>, value: &str) -> Result<bool> {
        Ok(self.store.view.send_if_modified(|view| {
            if view.get(name).map(String::as_str) != expected {
                return false;
            }
            view.insert(name.to_owned(), value.to_owned());
            true
        }))
    }

    async fn revoke(&self, name: &str, value: &str, ttl: std::time::Duration) -> Result<()> {
        // Each record is a generation of its name, as a registration is:
        // a later revocation of the same name outlives this one's timer.
        let directory = Arc::clone(&self.revoked);
        let generation = directory.claim(name);
        directory.put(name, generation, value.to_owned());
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(ttl.max(std::time::Duration::from_secs(1))).await;
            directory.remove(&name, generation);
        });
        Ok(())
    }

    async fn watch_revoked(&self) -> Result<watch::Receiver<View>> {
        Ok(self.revoked.view.subscribe())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Replacement, removal and drop are promises of every backend, tested
    // once in `tests/contract_discovery.rs`. This pins what only memory
    // promises: a stale registration's *updates* are ignored too.
    #[tokio::test]
    async fn a_stale_registration_neither_updates_nor_removes_its_successor() {
        let discovery = MemoryDiscovery::default();
        let old = discovery
            .register(ServiceKind::Comet, "c1", "old".into())
            .await
            .unwrap();
        let new = discovery
            .register(ServiceKind::Comet, "c1", "new".into())
            .await
            .unwrap();
        old.update("stale".into());
        old.deregister().await;

        let view = discovery.watch(ServiceKind::Comet).await.unwrap();
        assert_eq!(view.borrow().get("c1").map(String::as_str), Some("new"));

        new.deregister().await;
        assert!(view.borrow().is_empty());
    }
}
