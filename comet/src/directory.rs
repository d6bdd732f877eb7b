//! Where a push finds its recipients on this comet: connections by key
//! (the registry) and by room, and the counters of what was queued to them.
//!
//! This is all the push service sees of the comet, and the connection
//! tasks enter and leave it; neither needs the other's state.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::counters::Counters;
use crate::outbox::{fan_out, Outbox};
use crate::registry::Registry;
use crate::rooms::Rooms;

/// Paced broadcasts in progress on one comet, at most.
pub(crate) const PACED_AT_ONCE: usize = 16;

/// Every authenticated connection of this comet, by key and by room.
#[derive(Debug)]
pub(crate) struct Directory {
    pub(crate) keys: Registry,
    pub(crate) rooms: Rooms,
    pub(crate) counters: Arc<Counters>,
    /// One permit per paced broadcast in progress.
    pacing: Arc<Semaphore>,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            keys: Registry::default(),
            rooms: Rooms::default(),
            counters: Arc::default(),
            pacing: Arc::new(Semaphore::new(PACED_AT_ONCE)),
        }
    }
}

impl Directory {
    /// Queues `frames` to each of `keys` connected here (once per distinct
    /// key); returns how many connections took them all.
    pub(crate) fn push_keys(&self, keys: &[String], frames: &[Bytes]) -> usize {
        if frames.is_empty() {
            return 0;
        }
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let outboxes: Vec<Outbox> = keys
            .iter()
            .filter(|key| seen.insert(key.as_str()))
            .filter_map(|key| self.keys.get(key))
            .collect();
        fan_out(outboxes.iter(), frames, &self.counters)
    }

    /// Queues `frames` to every member of `room`; returns how many took
    /// them all.
    pub(crate) fn push_room(&self, room: &str, frames: &[Bytes]) -> usize {
        self.counters.room_push();
        if frames.is_empty() {
            return 0;
        }
        self.rooms.push(room, frames, &self.counters)
    }

    /// Queues `frames` to every connection; returns how many took them all.
    pub(crate) fn broadcast(&self, frames: &[Bytes]) -> usize {
        if frames.is_empty() {
            return 0;
        }
        self.keys.broadcast(frames, &self.counters)
    }

    /// Queues `frames` to every connection of the moment, `rate` a second
    /// (> 0; see [`crate::pacing`]), in a task of its own; returns how many
    /// connections it will try.
    ///
    /// Each paced broadcast holds a list of the connections until it is
    /// done; past [`PACED_AT_ONCE`] of them, a broadcast goes to every
    /// connection at once instead.
    pub(crate) fn broadcast_paced(&self, frames: Vec<Bytes>, rate: u32) -> usize {
        if frames.is_empty() {
            return 0;
        }
        let Ok(permit) = self.pacing.clone().try_acquire_owned() else {
            metrics::counter!("courier_comet_broadcasts_unpaced_total").increment(1);
            return self.broadcast(&frames);
        };
        let outboxes = self.keys.outboxes();
        let count = outboxes.len();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            crate::pacing::pace(outboxes, Arc::from(frames), rate, counters).await;
            drop(permit);
        });
        count
    }
}
