//! The in-process queue: Kafka's semantics without a broker.
//!
//! `courier up` and the tests run logic and job in one process; this queue
//! lets them behave exactly as they would against Kafka, so the code paths
//! that matter (partition order, consumer-group rebalances, redelivery of
//! uncommitted messages) are exercised without a broker.
//!
//! Shape, and why:
//!
//! * One append-only `PartitionLog` per partition, each behind its own
//!   lock, so publishers to different partitions never contend and a publish
//!   never waits for a consumer. A key picks its partition by a stable hash
//!   (FNV-1a), so one key's messages stay in order.
//! * A log keeps each group's committed offset next to the records. Commits
//!   therefore touch one partition lock, and the log can drop what every
//!   group has committed. Retention is also capped per partition so a group
//!   that never commits cannot grow memory without bound; like Kafka, a
//!   consumer whose position fell off the log resumes from the earliest
//!   retained record.
//! * Group membership lives in one map, locked only to join, leave and
//!   rebalance (rare). Assignment is deterministic round-robin over members
//!   in join order. Each member keeps its positions and pending
//!   `Revoked`/`Assigned` notices; `next()` hands out notices before
//!   messages, so a consumer always learns about a new partition before
//!   seeing its first message.
//! * Rebalances are incremental: a member keeps (and keeps its position in)
//!   the partitions it still owns and hears only about the ones it gains or
//!   loses. Kafka's default eager protocol instead revokes everything and
//!   assigns the full new set; a consumer that treats both events as deltas
//!   works with either.
//! * Waking is per member: a log remembers the member that owns it in each
//!   group and calls `Notify::notify_one` on publish, which keeps a permit if
//!   the member is not waiting yet, so no wake-up is lost and nothing polls.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Consumer, ConsumerEvent, Delivery, Queue};
use crate::Result;

/// Records kept per partition when some group lags behind.
pub const DEFAULT_RETENTION: usize = 100_000;

/// In-process partitioned queue with consumer groups.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
    /// Always reachable, never lossy: this queue lives and dies with the
    /// process.
    health: tokio::sync::watch::Sender<super::QueueHealth>,
}

#[derive(Debug)]
struct Shared {
    logs: Box<[Mutex<PartitionLog>]>,
    groups: Mutex<HashMap<Arc<str>, Group>>,
    retention: usize,
}

/// One partition: retained records plus each group's committed offset and
/// current owner.
#[derive(Debug, Default)]
struct PartitionLog {
    /// Offset of `records[0]`.
    base: i64,
    records: VecDeque<Record>,
    /// Next offset to read, per group (Kafka's committed offset).
    committed: HashMap<Arc<str>, i64>,
    /// The member of each group that currently owns this partition.
    owners: HashMap<Arc<str>, Arc<Member>>,
}

#[derive(Debug)]
struct Record {
    key: String,
    payload: Bytes,
}

impl PartitionLog {
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }

    /// Drops records past `retention` and those every group has committed.
    fn trim(&mut self, retention: usize) {
        let committed = self.committed.values().copied().min().unwrap_or(self.base);
        while self.records.len() > retention || (self.base < committed && !self.records.is_empty())
        {
            self.records.pop_front();
            self.base += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Group {
    next_id: u64,
    /// Members by join order.
    members: BTreeMap<u64, Arc<Member>>,
}

/// A group member's state, shared between the group and its consumer handle.
#[derive(Debug, Default)]
struct Member {
    wake: Notify,
    state: Mutex<MemberState>,
}

#[derive(Debug, Default)]
struct MemberState {
    /// Owned partitions and the next offset to deliver from each.
    positions: BTreeMap<i32, i64>,
    /// Revocations not yet reported by `next()`.
    revoked: BTreeSet<i32>,
    /// Assignments not yet reported by `next()`.
    assigned: BTreeSet<i32>,
    /// Where the next round-robin scan over owned partitions starts.
    cursor: i32,
}

impl MemoryQueue {
    /// A queue of `partitions` partitions (at least one), keeping up to
    /// [`DEFAULT_RETENTION`] records per partition.
    pub fn new(partitions: u32) -> Self {
        Self::with_retention(partitions, DEFAULT_RETENTION)
    }

    /// A queue keeping at most `retention` (at least one) records per
    /// partition.
    pub fn with_retention(partitions: u32, retention: usize) -> Self {
        let logs = (0..partitions.max(1))
            .map(|_| Mutex::new(PartitionLog::default()))
            .collect();
        Self {
            shared: Arc::new(Shared {
                logs,
                groups: Mutex::new(HashMap::new()),
                retention: retention.max(1),
            }),
            health: tokio::sync::watch::Sender::new(super::QueueHealth::default()),
        }
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.shared.logs.len() as u32
    }

    /// The partition `key` is published to.
    pub fn partition_for(&self, key: &str) -> i32 {
        (fnv1a(key.as_bytes()) % self.shared.logs.len() as u32) as i32
    }

    /// Retained offsets of `partition` as `[earliest, end)`, or `None` for an
    /// unknown partition.
    pub fn retained(&self, partition: i32) -> Option<(i64, i64)> {
        let log = self.shared.log(partition)?.lock();
        Some((log.base, log.end()))
    }

    /// The offset `group` committed on `partition` (the next record it will
    /// read), or `None` if the group never joined.
    pub fn committed(&self, group: &str, partition: i32) -> Option<i64> {
        let log = self.shared.log(partition)?.lock();
        log.committed.get(group).copied()
    }
}

/// FNV-1a, 32 bit: stable across processes and Rust versions.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

impl Shared {
    fn log(&self, partition: i32) -> Option<&Mutex<PartitionLog>> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.logs.get(p))
    }

    fn join(self: &Arc<Self>, group: &str) -> MemoryConsumer {
        let mut groups = self.groups.lock();
        let name = match groups.get_key_value(group) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(group);
                // A new group starts from the earliest retained record; the
                // entry also holds back trimming until the group commits.
                for log in self.logs.iter() {
                    let mut log = log.lock();
                    let base = log.base;
                    log.committed.insert(name.clone(), base);
                }
                name
            }
        };
        let entry = groups.entry(name.clone()).or_default();
        let id = entry.next_id;
        entry.next_id += 1;
        let member = Arc::new(Member::default());
        entry.members.insert(id, member.clone());
        self.rebalance(&name, entry);
        MemoryConsumer {
            shared: self.clone(),
            group: name,
            id,
            member,
        }
    }

    fn leave(&self, group: &Arc<str>, id: u64) {
        let mut groups = self.groups.lock();
        if let Some(entry) = groups.get_mut(group) {
            if let Some(member) = entry.members.remove(&id) {
                // Give up every partition first so its owner entry goes away.
                let owned: Vec<i32> = member.state.lock().positions.keys().copied().collect();
                for p in owned {
                    self.revoke(group, &member, p);
                }
            }
            self.rebalance(group, entry);
        }
    }

    /// Deals partitions round-robin over the members in join order. All
    /// revocations happen before any assignment, so a new owner reads the
    /// committed offset only after the old owner can no longer commit.
    fn rebalance(&self, group: &Arc<str>, entry: &Group) {
        let members: Vec<&Arc<Member>> = entry.members.values().collect();
        if members.is_empty() {
            return;
        }
        let owner_of = |p: usize| members[p % members.len()];
        for (p, _) in self.logs.iter().enumerate() {
            let owner = owner_of(p);
            for m in &members {
                if !Arc::ptr_eq(m, owner) {
                    self.revoke(group, m, p as i32);
                }
            }
        }
        for (p, _) in self.logs.iter().enumerate() {
            self.assign(group, owner_of(p), p as i32);
        }
        tracing::debug!(group = %group, members = members.len(), "memory queue rebalanced");
    }

    fn revoke(&self, group: &Arc<str>, member: &Arc<Member>, partition: i32) {
        let mut state = member.state.lock();
        if state.positions.remove(&partition).is_none() {
            return;
        }
        if !state.assigned.remove(&partition) {
            state.revoked.insert(partition);
        }
        if let Some(log) = self.log(partition) {
            let mut log = log.lock();
            if log
                .owners
                .get(group)
                .is_some_and(|o| Arc::ptr_eq(o, member))
            {
                log.owners.remove(group);
            }
        }
        drop(state);
        member.wake.notify_one();
    }

    fn assign(&self, group: &Arc<str>, member: &Arc<Member>, partition: i32) {
        let mut state = member.state.lock();
        if state.positions.contains_key(&partition) {
            return;
        }
        let Some(log) = self.log(partition) else {
            return;
        };
        let mut log = log.lock();
        let from = log.committed.get(group).copied().unwrap_or(log.base);
        log.owners.insert(group.clone(), member.clone());
        drop(log);
        state.positions.insert(partition, from);
        state.assigned.insert(partition);
        drop(state);
        member.wake.notify_one();
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, key: &str, payload: Bytes) -> Result<()> {
        let partition = self.partition_for(key);
        let Some(log) = self.shared.log(partition) else {
            return Ok(()); // unreachable: partition_for is in range
        };
        let mut log = log.lock();
        log.records.push_back(Record {
            key: key.to_owned(),
            payload,
        });
        log.trim(self.shared.retention);
        for owner in log.owners.values() {
            owner.wake.notify_one();
        }
        Ok(())
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(self.shared.join(group)))
    }

    fn health(&self) -> tokio::sync::watch::Receiver<super::QueueHealth> {
        self.health.subscribe()
    }
}

/// A member of a consumer group of a [`MemoryQueue`]; leaves the group
/// (triggering a rebalance) when dropped. One task at a time is expected
/// to wait in `next()`; any number may commit.
#[derive(Debug)]
pub struct MemoryConsumer {
    shared: Arc<Shared>,
    group: Arc<str>,
    id: u64,
    member: Arc<Member>,
}

impl MemoryConsumer {
    /// A pending rebalance notice or the next retained message, if any.
    fn poll_event(&self) -> Option<ConsumerEvent> {
        let mut state = self.member.state.lock();
        if !state.revoked.is_empty() {
            let revoked = std::mem::take(&mut state.revoked);
            return Some(ConsumerEvent::Revoked(revoked.into_iter().collect()));
        }
        if !state.assigned.is_empty() {
            let assigned = std::mem::take(&mut state.assigned);
            return Some(ConsumerEvent::Assigned(assigned.into_iter().collect()));
        }
        // Scan owned partitions round-robin from the cursor so one busy
        // partition cannot starve the others.
        let cursor = state.cursor;
        let order: Vec<i32> = state
            .positions
            .range(cursor..)
            .chain(state.positions.range(..cursor))
            .map(|(p, _)| *p)
            .collect();
        for partition in order {
            let Some(log) = self.shared.log(partition) else {
                continue;
            };
            let log = log.lock();
            let Some(position) = state.positions.get_mut(&partition) else {
                continue;
            };
            let offset = (*position).max(log.base);
            let Some(record) = usize::try_from(offset - log.base)
                .ok()
                .and_then(|i| log.records.get(i))
            else {
                continue;
            };
            *position = offset + 1;
            state.cursor = partition + 1;
            return Some(ConsumerEvent::Message(Delivery {
                partition,
                offset,
                key: Some(record.key.clone()),
                payload: record.payload.clone(),
            }));
        }
        None
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&self) -> Result<ConsumerEvent> {
        loop {
            if let Some(event) = self.poll_event() {
                return Ok(event);
            }
            // A publish or rebalance between the poll and here left a permit,
            // so this returns at once.
            self.member.wake.notified().await;
        }
    }

    async fn commit(&self, partition: i32, offset: i64) -> Result<()> {
        let state = self.member.state.lock();
        if !state.positions.contains_key(&partition) {
            return Ok(());
        }
        if let Some(log) = self.shared.log(partition) {
            let mut log = log.lock();
            let next = offset.saturating_add(1).clamp(0, log.end());
            log.committed.insert(self.group.clone(), next);
            log.trim(self.shared.retention);
        }
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.shared.leave(&self.group, self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn message(c: &dyn Consumer) -> Delivery {
        loop {
            if let ConsumerEvent::Message(d) = c.next().await.unwrap() {
                return d;
            }
        }
    }

    #[test]
    fn partition_of_a_key_is_stable() {
        let q = MemoryQueue::new(8);
        assert_eq!(q.partition_for("user:42"), q.partition_for("user:42"));
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        let used: BTreeSet<i32> = (0..100)
            .map(|i| q.partition_for(&format!("k{i}")))
            .collect();
        assert_eq!(used.len(), 8);
    }

    #[tokio::test]
    async fn retention_caps_a_lagging_group_and_it_resumes_from_earliest() {
        let q = MemoryQueue::with_retention(1, 3);
        let c = q.subscribe("g").await.unwrap();
        for i in 0..5u8 {
            q.publish("k", Bytes::from(vec![i])).await.unwrap();
        }
        assert_eq!(q.retained(0), Some((2, 5)));
        let d = message(c.as_ref()).await;
        assert_eq!((d.offset, d.payload), (2, Bytes::from(vec![2])));
    }

    #[tokio::test]
    async fn records_every_group_committed_are_dropped() {
        let q = MemoryQueue::new(1);
        let a = q.subscribe("a").await.unwrap();
        let b = q.subscribe("b").await.unwrap();
        for _ in 0..4 {
            q.publish("k", Bytes::from_static(b"x")).await.unwrap();
        }
        a.commit(0, 2).await.unwrap();
        assert_eq!(q.retained(0), Some((0, 4)), "group b still needs them");
        b.commit(0, 1).await.unwrap();
        assert_eq!(q.retained(0), Some((2, 4)));
    }

    #[tokio::test]
    async fn a_revoked_partition_cannot_be_committed() {
        let q = MemoryQueue::new(2);
        let a = q.subscribe("g").await.unwrap();
        q.publish("k", Bytes::from_static(b"x")).await.unwrap();
        let d = message(a.as_ref()).await;
        let b = q.subscribe("g").await.unwrap();
        // Round-robin: a keeps partition 0, b takes partition 1.
        let other = if d.partition == 0 { &b } else { &a };
        other.commit(d.partition, d.offset).await.unwrap();
        assert_eq!(q.retained(d.partition), Some((0, 1)), "ignored commit");
    }
}
