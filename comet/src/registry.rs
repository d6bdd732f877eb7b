//! The key index: connection key -> the connection (its outbox, and whose
//! it is), for `PushKeys`, `Kick`, `Broadcast`, the connection count, and
//! reporting every connection again when logic's session store lost writes.
//!
//! A sharded map (dashmap), so connects, disconnects and pushes to different
//! keys rarely contend. Fan-out only calls the non-blocking
//! [`Outbox::push`], so a shard's read lock is held for a few atomics per
//! member, never across an await.

use std::sync::Arc;

use bytes::Bytes;
use courier_runtime::revoked::TokenStamp;
use dashmap::DashMap;

use crate::counters::Counters;
use crate::outbox::{fan_out, Outbox};

/// Whose a connection is: what logic needs to record its session again.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Shared with the connection's session task.
    pub(crate) uid: Arc<str>,
    /// The client's device id, if it gave one.
    pub(crate) device: Option<Arc<str>>,
    /// What a revocation finds the connection's token by.
    pub(crate) token: TokenStamp,
}

#[derive(Debug)]
struct Connection {
    outbox: Outbox,
    identity: Identity,
}

/// Every authenticated connection of this comet, by key.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_key: DashMap<Arc<str>, Connection>,
}

impl Registry {
    /// Adds an authenticated connection.
    pub(crate) fn insert(&self, outbox: Outbox, identity: Identity) {
        self.by_key
            .insert(outbox.key().clone(), Connection { outbox, identity });
    }

    /// Removes a connection that has closed.
    pub(crate) fn remove(&self, key: &str) {
        self.by_key.remove(key);
    }

    /// The outbox of `key`, if it is connected here.
    pub(crate) fn get(&self, key: &str) -> Option<Outbox> {
        self.by_key.get(key).map(|c| c.outbox.clone())
    }

    /// Whose the connection `key` is.
    pub(crate) fn uid_of(&self, key: &str) -> Option<Arc<str>> {
        self.by_key.get(key).map(|c| c.identity.uid.clone())
    }

    /// The connection `key` now holds another token (a `Refresh`).
    pub(crate) fn set_token(&self, key: &str, token: TokenStamp) {
        if let Some(mut c) = self.by_key.get_mut(key) {
            c.identity.token = token;
        }
    }

    /// Closes every connection whose identity `doomed` picks, with `frame`
    /// as its last; returns how many. One shard's read lock at a time.
    pub(crate) fn close_where(
        &self,
        mut doomed: impl FnMut(&Identity) -> bool,
        frame: &Bytes,
    ) -> usize {
        let mut closed = 0;
        for c in self.by_key.iter() {
            if doomed(&c.identity) {
                c.outbox.close_with(frame.clone());
                closed += 1;
            }
        }
        closed
    }

    /// Connections currently authenticated.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Up to `n` connections for which `pick` is true, in no particular
    /// order.
    pub(crate) fn some(&self, n: usize, mut pick: impl FnMut(&Outbox) -> bool) -> Vec<Outbox> {
        self.by_key
            .iter()
            .filter(|c| pick(&c.outbox))
            .take(n)
            .map(|c| c.outbox.clone())
            .collect()
    }

    /// Every connection now: `(key, identity)`.
    pub(crate) fn identities(&self) -> Vec<(Arc<str>, Identity)> {
        self.by_key
            .iter()
            .map(|c| (c.key().clone(), c.identity.clone()))
            .collect()
    }

    /// Every connection's outbox now.
    pub(crate) fn outboxes(&self) -> Vec<Outbox> {
        self.by_key.iter().map(|c| c.outbox.clone()).collect()
    }

    /// Queues `frames` to every connection; returns how many took them all.
    pub(crate) fn broadcast(&self, frames: &[Bytes], counters: &Counters) -> usize {
        // One shard's read lock at a time, never across an await.
        fan_out(
            self.by_key.iter().map(|c| c.outbox.clone()),
            frames,
            counters,
        )
    }
}
