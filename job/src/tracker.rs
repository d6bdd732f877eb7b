//! Which offsets of each partition may be committed.
//!
//! A delivery is done when every comet push it caused has answered (or was
//! skipped because the comet left), and deliveries finish out of order: a
//! room message to a slow comet may still be pending while later messages of
//! the same partition went to fast comets long ago. Kafka only remembers one
//! offset per partition, "everything up to here is done", so the tracker
//! keeps the pending offsets of each partition in order and commits the
//! highest offset below which nothing is pending.
//!
//! Each assignment of a partition gets a fresh [`Epoch`]. A completion that
//! arrives for an older epoch (the partition was revoked, maybe assigned back
//! since) is ignored: its offset belongs to tracking that no longer exists,
//! and the new owner will see the message again.
//!
//! The tracker is plain data owned by the consumer loop, so it needs no lock
//! and is tested on its own.

use std::collections::{BTreeMap, HashMap};

/// Identifies one assignment of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

/// The tracking of one partition during one assignment.
#[derive(Debug)]
struct PartitionTrack {
    epoch: Epoch,
    /// Offset -> deliveries at that offset not yet done (normally 1; more if
    /// the queue redelivered an offset within the same assignment).
    pending: BTreeMap<i64, u32>,
    /// Highest offset below which (inclusive) everything is done.
    done_through: Option<i64>,
    /// Highest offset the queue acknowledged as committed.
    committed: Option<i64>,
}

/// The in-flight offsets of every owned partition.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    partitions: HashMap<i32, PartitionTrack>,
    next_epoch: u64,
}

impl Tracker {
    /// A tracker that owns no partition yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn fresh(&mut self) -> PartitionTrack {
        self.next_epoch += 1;
        PartitionTrack {
            epoch: Epoch(self.next_epoch),
            pending: BTreeMap::new(),
            done_through: None,
            committed: None,
        }
    }

    /// `partitions` now belong to this consumer: start tracking them afresh.
    pub(crate) fn assign(&mut self, partitions: &[i32]) {
        for &p in partitions {
            let track = self.fresh();
            self.partitions.insert(p, track);
        }
    }

    /// `partitions` were taken away: forget them without committing. Their
    /// pending messages are redelivered to the new owner.
    pub(crate) fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// Starts tracking a consumed message and returns the epoch its
    /// completion must quote. A partition seen without an `Assigned` event is
    /// tracked from here on.
    pub(crate) fn track(&mut self, partition: i32, offset: i64) -> Epoch {
        if !self.partitions.contains_key(&partition) {
            let track = self.fresh();
            self.partitions.insert(partition, track);
        }
        match self.partitions.get_mut(&partition) {
            Some(track) => {
                *track.pending.entry(offset).or_insert(0) += 1;
                track.epoch
            }
            // Unreachable: inserted just above. An epoch that matches nothing
            // makes the completion a harmless no-op.
            None => Epoch(0),
        }
    }

    /// Marks one delivery at `offset` done. Returns whether it belonged to
    /// the current tracking (false for a stale epoch or unknown offset).
    pub(crate) fn complete(&mut self, partition: i32, offset: i64, epoch: Epoch) -> bool {
        let Some(track) = self.partitions.get_mut(&partition) else {
            return false;
        };
        if track.epoch != epoch {
            return false;
        }
        match track.pending.get_mut(&offset) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return false,
        }
        // Everything at the front that is done is now committable.
        while let Some(entry) = track.pending.first_entry() {
            if *entry.get() > 0 {
                break;
            }
            let (offset, _) = entry.remove_entry();
            track.done_through = Some(track.done_through.map_or(offset, |d| d.max(offset)));
        }
        true
    }

    /// Partitions whose done offset is ahead of what was committed, with the
    /// offset to commit ("everything up to and including this").
    pub(crate) fn ready(&self) -> Vec<(i32, i64, Epoch)> {
        self.partitions
            .iter()
            .filter_map(|(&p, t)| {
                let done = t.done_through?;
                (t.committed < Some(done)).then_some((p, done, t.epoch))
            })
            .collect()
    }

    /// Records that `offset` of `partition` was committed.
    pub(crate) fn committed(&mut self, partition: i32, offset: i64, epoch: Epoch) {
        if let Some(t) = self.partitions.get_mut(&partition) {
            if t.epoch == epoch && t.committed < Some(offset) {
                t.committed = Some(offset);
            }
        }
    }

    /// Deliveries consumed and not yet done, over all partitions.
    pub(crate) fn pending(&self) -> usize {
        self.partitions
            .values()
            .map(|t| t.pending.values().map(|&n| n as usize).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(t: &Tracker) -> Vec<(i32, i64)> {
        let mut r: Vec<_> = t.ready().into_iter().map(|(p, o, _)| (p, o)).collect();
        r.sort();
        r
    }

    #[test]
    fn out_of_order_completion_commits_only_the_done_prefix() {
        let mut t = Tracker::new();
        t.assign(&[0]);
        let e: Vec<_> = (10..15).map(|o| t.track(0, o)).collect();
        assert!(ready(&t).is_empty());

        // 12 and 11 finish before 10: nothing is committable yet.
        assert!(t.complete(0, 12, e[2]));
        assert!(t.complete(0, 11, e[1]));
        assert!(ready(&t).is_empty());

        // 10 finishes: 10, 11, 12 are all done.
        assert!(t.complete(0, 10, e[0]));
        assert_eq!(ready(&t), vec![(0, 12)]);
        t.committed(0, 12, e[0]);
        assert!(ready(&t).is_empty());

        // 14 before 13.
        assert!(t.complete(0, 14, e[4]));
        assert!(ready(&t).is_empty());
        assert!(t.complete(0, 13, e[3]));
        assert_eq!(ready(&t), vec![(0, 14)]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_block_commits() {
        let mut t = Tracker::new();
        let a = t.track(3, 100);
        let b = t.track(3, 250);
        t.complete(3, 250, b);
        assert!(ready(&t).is_empty());
        t.complete(3, 100, a);
        assert_eq!(ready(&t), vec![(3, 250)]);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = Tracker::new();
        t.assign(&[0, 1]);
        let a = t.track(0, 5);
        let b = t.track(1, 7);
        let c = t.track(1, 8);
        t.complete(1, 8, c);
        t.complete(0, 5, a);
        assert_eq!(ready(&t), vec![(0, 5)]);
        t.complete(1, 7, b);
        assert_eq!(ready(&t), vec![(0, 5), (1, 8)]);
    }

    #[test]
    fn revoked_partitions_are_forgotten_and_stale_completions_ignored() {
        let mut t = Tracker::new();
        t.assign(&[0]);
        let old = t.track(0, 1);
        t.revoke(&[0]);
        assert!(!t.complete(0, 1, old));
        assert!(ready(&t).is_empty());

        // Assigned back: a fresh start, the old epoch still does nothing.
        t.assign(&[0]);
        let new = t.track(0, 1);
        assert_ne!(old, new);
        assert!(!t.complete(0, 1, old));
        assert!(ready(&t).is_empty());
        assert!(t.complete(0, 1, new));
        assert_eq!(ready(&t), vec![(0, 1)]);
    }

    #[test]
    fn a_redelivered_offset_needs_every_copy_done() {
        let mut t = Tracker::new();
        let a = t.track(0, 4);
        let b = t.track(0, 4);
        t.complete(0, 4, a);
        assert!(ready(&t).is_empty());
        t.complete(0, 4, b);
        assert_eq!(ready(&t), vec![(0, 4)]);
        // A third completion for the same offset is not counted.
        assert!(!t.complete(0, 4, b));
    }

    #[test]
    fn commits_never_go_backwards() {
        let mut t = Tracker::new();
        let e = t.track(0, 9);
        t.complete(0, 9, e);
        t.committed(0, 9, e);
        // The queue hands back an older offset (a seek): done, but it must not
        // move the commit back.
        let e = t.track(0, 3);
        t.complete(0, 3, e);
        assert!(ready(&t).is_empty());
    }
}
