//! The room index: room -> the connections of this comet in it.
//!
//! Sharded (dashmap) so joins to different rooms do not contend, and a room
//! push holds one shard's read lock only while it queues the same encoded
//! bytes to each member (never across an await).
//!
//! Logic must know which comets hold members of a room, so job sends room
//! batches only there. A room's first member here, or its last leaving, is
//! recorded in [`RoomChanges`] while the room's entry is still locked (so the
//! recorded order is the real order), and a separate task reports the
//! coalesced changes with `RoomsChanged`. Every change bumps a generation;
//! the reporter publishes the generation logic has acknowledged, so a join
//! can hold its reply until logic knows (see `Session::join`) without the
//! read loop ever waiting. The periodic `RenewOnline` repeats the full set,
//! so a lost report heals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::counters::Counters;
use crate::outbox::{fan_out, Outbox};

/// Rooms with members on this comet.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    members: DashMap<String, HashMap<Arc<str>, Outbox>>,
    changes: RoomChanges,
}

impl Rooms {
    /// Adds a connection to `room` (a no-op if it is already in).
    pub(crate) fn join(&self, room: &str, outbox: &Outbox) {
        let mut members = self.members.entry(room.to_owned()).or_default();
        if members.is_empty() {
            self.changes.added(room);
        }
        members.insert(outbox.key().clone(), outbox.clone());
    }

    /// Removes a connection from `room`.
    pub(crate) fn leave(&self, room: &str, key: &str) {
        if let Entry::Occupied(mut entry) = self.members.entry(room.to_owned()) {
            entry.get_mut().remove(key);
            if entry.get().is_empty() {
                entry.remove();
                self.changes.removed(room);
            }
        }
    }

    /// The connections in `room` now.
    pub(crate) fn members_of(&self, room: &str) -> Vec<Outbox> {
        self.members
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the connection `key` is in `room`.
    pub(crate) fn has(&self, room: &str, key: &str) -> bool {
        self.members.get(room).is_some_and(|m| m.contains_key(key))
    }

    /// Queues `frames` to every member of `room`; returns how many members
    /// took them all.
    pub(crate) fn push(&self, room: &str, frames: &[Bytes], counters: &Counters) -> usize {
        match self.members.get(room) {
            Some(members) => fan_out(members.values(), frames, counters),
            None => 0,
        }
    }

    /// Rooms with members here.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Members per room.
    pub(crate) fn counts(&self) -> HashMap<String, u32> {
        self.members
            .iter()
            .map(|e| {
                (
                    e.key().clone(),
                    u32::try_from(e.value().len()).unwrap_or(u32::MAX),
                )
            })
            .collect()
    }

    /// The pending membership changes, for the reporter.
    pub(crate) fn changes(&self) -> &RoomChanges {
        &self.changes
    }
}

/// Rooms that gained their first member or lost their last since the last
/// report. The latest change of a room wins.
#[derive(Debug)]
pub(crate) struct RoomChanges {
    pending: Mutex<PendingRooms>,
    notify: Notify,
    /// The highest generation logic has acknowledged.
    reported: watch::Sender<u64>,
}

impl Default for RoomChanges {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            notify: Notify::new(),
            reported: watch::Sender::new(0),
        }
    }
}

/// A batch of membership changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingRooms {
    pub(crate) added: HashSet<String>,
    pub(crate) removed: HashSet<String>,
    /// Generation of the newest change in this batch (or of the last change
    /// recorded, when taken).
    pub(crate) generation: u64,
}

impl PendingRooms {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl RoomChanges {
    fn added(&self, room: &str) {
        let mut p = self.pending.lock();
        p.removed.remove(room);
        p.added.insert(room.to_owned());
        p.generation += 1;
        drop(p);
        self.notify.notify_one();
    }

    fn removed(&self, room: &str) {
        let mut p = self.pending.lock();
        p.added.remove(room);
        p.removed.insert(room.to_owned());
        p.generation += 1;
        drop(p);
        self.notify.notify_one();
    }

    /// The generation of the newest change recorded so far.
    pub(crate) fn generation(&self) -> u64 {
        self.pending.lock().generation
    }

    /// Logic has acknowledged every change up to `generation`.
    pub(crate) fn acknowledged(&self, generation: u64) {
        self.reported.send_if_modified(|r| {
            let newer = generation > *r;
            if newer {
                *r = generation;
            }
            newer
        });
    }

    /// Waits until logic has acknowledged every change up to `generation`.
    pub(crate) async fn wait_acknowledged(&self, generation: u64) {
        let mut rx = self.reported.subscribe();
        let _ = rx.wait_for(|r| *r >= generation).await;
    }

    /// Makes the next `changed` return at once (a failed batch was restored
    /// and must be retried even if nothing else changes).
    pub(crate) fn notify_retry(&self) {
        self.notify.notify_one();
    }

    /// Waits until some change may be pending.
    pub(crate) async fn changed(&self) {
        self.notify.notified().await
    }

    /// Takes every pending change (the generation counter stays).
    pub(crate) fn take(&self) -> PendingRooms {
        let mut p = self.pending.lock();
        let generation = p.generation;
        let mut batch = std::mem::take(&mut *p);
        p.generation = generation;
        batch.generation = generation;
        batch
    }

    /// Puts back a batch that could not be reported, unless a newer change
    /// of the same room superseded it.
    pub(crate) fn restore(&self, failed: PendingRooms) {
        let mut p = self.pending.lock();
        for room in failed.added {
            if !p.removed.contains(&room) {
                p.added.insert(room);
            }
        }
        for room in failed.removed {
            if !p.added.contains(&room) {
                p.removed.insert(room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(key: &str) -> (Outbox, crate::outbox::Receiver) {
        let (outbox, rx) = Outbox::new(
            Arc::from(key),
            crate::outbox::frames(4),
            Arc::new(Counters::default()),
        );
        outbox.release();
        (outbox, rx)
    }

    #[test]
    fn first_join_and_last_leave_are_reported_once() {
        let rooms = Rooms::default();
        let (a, _ra) = outbox("a");
        let (b, _rb) = outbox("b");
        rooms.join("r", &a);
        rooms.join("r", &b);
        assert_eq!(
            rooms.changes().take().added,
            HashSet::from(["r".to_owned()])
        );
        rooms.leave("r", "a");
        assert!(rooms.changes().take().is_empty(), "b is still in r");
        rooms.leave("r", "b");
        assert_eq!(
            rooms.changes().take().removed,
            HashSet::from(["r".to_owned()])
        );
        assert_eq!(rooms.len(), 0);
    }

    #[test]
    fn push_reaches_members_only() {
        let rooms = Rooms::default();
        let (a, mut ra) = outbox("a");
        let (b, mut rb) = outbox("b");
        rooms.join("r", &a);
        rooms.join("other", &b);
        let counters = Counters::default();
        assert_eq!(rooms.push("r", &[Bytes::from_static(b"x")], &counters), 1);
        assert_eq!(ra.try_recv().unwrap(), Bytes::from_static(b"x"));
        assert!(rb.try_recv().is_none());
        assert_eq!(
            rooms.push("nobody", &[Bytes::from_static(b"x")], &counters),
            0
        );
        assert_eq!(
            counters.frames_queued(),
            1,
            "counted once per member reached"
        );
    }

    #[test]
    fn a_failed_report_is_restored_unless_superseded() {
        let changes = RoomChanges::default();
        changes.added("a");
        changes.added("b");
        let failed = changes.take();
        changes.removed("b");
        changes.restore(failed);
        let p = changes.take();
        assert_eq!(p.added, HashSet::from(["a".to_owned()]));
        assert_eq!(p.removed, HashSet::from(["b".to_owned()]));
    }

    #[tokio::test]
    async fn joins_wait_until_logic_acknowledged_their_generation() {
        let rooms = Rooms::default();
        let (a, _ra) = outbox("a");
        rooms.join("r", &a);
        let generation = rooms.changes().generation();
        assert!(generation > 0);

        let changes = rooms.changes();
        let wait = changes.wait_acknowledged(generation);
        tokio::pin!(wait);
        // Nothing acknowledged yet: the join must keep waiting.
        assert!(futures::poll!(wait.as_mut()).is_pending());

        let batch = changes.take();
        assert_eq!(batch.generation, generation);
        // A failed report is restored and keeps its generation unacknowledged.
        changes.restore(batch);
        assert!(futures::poll!(wait.as_mut()).is_pending());

        let batch = changes.take();
        changes.acknowledged(batch.generation);
        wait.await;
        // Taking a batch does not reset the counter.
        assert_eq!(changes.generation(), generation);
    }
}
