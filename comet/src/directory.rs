//! Where a push finds its recipients on this comet: connections by key
//! (the registry) and by room, and the counters of what was queued to them.
//!
//! This is all the push service sees of the comet, and the connection
//! tasks enter and leave it; neither needs the other's state.

use std::sync::Arc;

use bytes::Bytes;

use crate::counters::Counters;
use crate::outbox::{fan_out, Outbox};
use crate::registry::Registry;
use crate::rooms::Rooms;

/// Every authenticated connection of this comet, by key and by room.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) keys: Registry,
    pub(crate) rooms: Rooms,
    pub(crate) counters: Arc<Counters>,
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
}
