//! One member of a Kafka consumer group.
//!
//! librdkafka reports rebalances through callbacks that run inside the
//! consumer's poll, i.e. inside `KafkaConsumer::next`. The
//! `RebalanceLog` context turns them into `Revoked`/`Assigned` events and
//! wakes `next`, which always hands out pending events before any message:
//! a message received in the same poll as a rebalance is held back until the
//! events are out, and a message of a partition no longer owned is dropped
//! (its new owner gets it again from the committed offset).
//!
//! As with any Kafka consumer, `next` must be called regularly (within
//! `max.poll.interval.ms`), because rebalances progress only while it polls.
//!
//! When every broker connection is down, a member that owns partitions
//! lets them go (unsubscribe, then subscribe again): it rejoins once a
//! broker answers and gets its partitions with what that broker says of
//! the topic now. A broker that came back without its log knows the topic
//! under a new id, if at all, and a member still fetching the old one
//! would meet a librdkafka 2.12 crash on tansu's answer (a fetch reply
//! naming no topic); after a rejoin it never asks for the old id.
//!
//! Each member also runs an [`orphans`] watch: if a partition it does not
//! own goes unconsumed for too long (a coordinator that failed to reassign a
//! crashed member's partitions), it rejoins the group to force a rebalance.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::BACKEND;
use crate::queue::{Consumer, ConsumerEvent, Delivery};
use crate::{Error, Result};

mod orphans;

/// A member of a consumer group of a [`super::KafkaQueue`]. Dropping it
/// leaves the group (on a blocking thread, since librdkafka's close waits
/// for the broker).
pub struct KafkaConsumer {
    consumer: Option<Arc<StreamConsumer<RebalanceLog>>>,
    assignment: Arc<Assignment>,
    /// The [`orphans`] watch of this member's group.
    watch: Option<JoinHandle<()>>,
    /// A subscribe after letting partitions go failed and must be retried.
    resubscribe: AtomicBool,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("topic", &self.assignment.topic)
            .finish_non_exhaustive()
    }
}

/// The partitions this member owns and the rebalance events not yet
/// returned by `next`.
#[derive(Debug)]
struct Assignment {
    topic: String,
    state: Mutex<AssignmentState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct AssignmentState {
    owned: BTreeSet<i32>,
    events: VecDeque<ConsumerEvent>,
    /// A message received while events were pending, delivered after them
    /// unless its partition is revoked meanwhile (its new owner, or this
    /// member after an eager reassignment, fetches it again).
    held: Option<Delivery>,
}

impl Assignment {
    fn owns(&self, partition: i32) -> bool {
        self.state.lock().owned.contains(&partition)
    }

    /// The next pending event, else the held message.
    fn take_pending(&self) -> Option<ConsumerEvent> {
        let mut state = self.state.lock();
        match state.events.pop_front() {
            Some(event) => Some(event),
            None => state.held.take().map(ConsumerEvent::Message),
        }
    }

    /// `delivery` as the next event, unless rebalance events must go
    /// first (then it is held) or this member no longer owns its partition.
    fn admit(&self, delivery: Delivery) -> Option<ConsumerEvent> {
        let mut state = self.state.lock();
        if !state.owned.contains(&delivery.partition) {
            return None;
        }
        if state.events.is_empty() {
            return Some(ConsumerEvent::Message(delivery));
        }
        state.held = Some(delivery);
        None
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

/// The consumer context: records rebalances into an [`Assignment`].
struct RebalanceLog {
    assignment: Arc<Assignment>,
}

impl ClientContext for RebalanceLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        super::logs::log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::logs::error(error, reason);
    }

    /// librdkafka's statistics (every `statistics.interval.ms`): each
    /// partition's consumer lag, for the partitions this consumer owns (0
    /// for the others, which their owners report).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let owned = self.assignment.state.lock().owned.clone();
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *partition < 0 {
                    continue;
                }
                let lag = if owned.contains(partition) {
                    stats.consumer_lag.max(0)
                } else {
                    0
                };
                metrics::gauge!("courier_queue_consumer_lag", "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = self.assignment.partitions(tpl);
                let mut state = self.assignment.state.lock();
                let revoked: Vec<i32> = revoked
                    .into_iter()
                    .filter(|p| state.owned.remove(p))
                    .collect();
                if let Some(held) = &state.held {
                    if revoked.contains(&held.partition) {
                        state.held = None;
                    }
                }
                if !revoked.is_empty() {
                    tracing::debug!(?revoked, "kafka partitions revoked");
                    state.events.push_back(ConsumerEvent::Revoked(revoked));
                }
                drop(state);
                self.assignment.changed.notify_one();
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance failed"),
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = self.assignment.partitions(tpl);
            let mut state = self.assignment.state.lock();
            let assigned: Vec<i32> = assigned
                .into_iter()
                .filter(|p| state.owned.insert(*p))
                .collect();
            if !assigned.is_empty() {
                tracing::debug!(?assigned, "kafka partitions assigned");
                state.events.push_back(ConsumerEvent::Assigned(assigned));
            }
            drop(state);
            self.assignment.changed.notify_one();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "kafka offset commit failed");
        }
    }
}

impl KafkaConsumer {
    /// Joins `group` on `topic` with `config` (which has no `group.id` yet).
    pub(super) fn join(config: &ClientConfig, topic: &str, group: &str) -> Result<Self> {
        let assignment = Arc::new(Assignment {
            topic: topic.to_owned(),
            state: Mutex::new(AssignmentState::default()),
            changed: Notify::new(),
        });
        let context = RebalanceLog {
            assignment: assignment.clone(),
        };
        let consumer: StreamConsumer<RebalanceLog> = config
            .clone()
            .set("group.id", group)
            .create_with_context(context)
            .map_err(|e| Error::unavailable(BACKEND, e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| Error::unavailable(BACKEND, e))?;
        let consumer = Arc::new(consumer);
        let watch = orphans::spawn(&consumer, assignment.clone(), orphans::stall_limit(config));
        Ok(Self {
            consumer: Some(consumer),
            assignment,
            watch,
            resubscribe: AtomicBool::new(false),
        })
    }

    /// Lets this member's partitions go while no broker answers (see the
    /// module docs); the revocation reaches `next` as a `Revoked` event.
    fn let_go(&self, consumer: &StreamConsumer<RebalanceLog>) {
        if self.assignment.state.lock().owned.is_empty() {
            return;
        }
        tracing::warn!(topic = %self.assignment.topic, "every broker is down; letting this member's partitions go until one answers");
        consumer.unsubscribe();
        self.subscribe(consumer);
    }

    fn subscribe(&self, consumer: &StreamConsumer<RebalanceLog>) {
        let failed = consumer.subscribe(&[self.assignment.topic.as_str()]);
        if let Err(e) = &failed {
            tracing::warn!(topic = %self.assignment.topic, error = %e, "resubscribing failed; retrying");
        }
        self.resubscribe.store(failed.is_err(), Ordering::Relaxed);
    }

    fn consumer(&self) -> Result<&StreamConsumer<RebalanceLog>> {
        self.consumer.as_deref().ok_or(Error::Closed)
    }

    fn delivery(message: &BorrowedMessage<'_>) -> Delivery {
        Delivery {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        }
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn next(&self) -> Result<ConsumerEvent> {
        let consumer = self.consumer()?;
        if self.resubscribe.load(Ordering::Relaxed) {
            self.subscribe(consumer);
        }
        loop {
            if let Some(event) = self.assignment.take_pending() {
                return Ok(event);
            }
            // Rebalance callbacks run inside `recv`; `changed` lets an event
            // out even while no message arrives. Both are cancel-safe.
            tokio::select! {
                biased;
                () = self.assignment.changed.notified() => {}
                received = consumer.recv() => {
                    let message = match received {
                        Ok(message) => message,
                        // librdkafka reports what it recovers from by itself
                        // (a broker down, a partition gone) as consumer
                        // errors, one per attempt. They queue up during an
                        // outage: taken one by one with a pause between
                        // them, the backlog would outlast the outage by
                        // minutes. Count them and read on.
                        Err(KafkaError::MessageConsumption(code)) => {
                            metrics::counter!("courier_queue_consume_errors_total").increment(1);
                            if code == RDKafkaErrorCode::AllBrokersDown {
                                self.let_go(consumer);
                            }
                            tracing::debug!(error = %code, "kafka consumer error; librdkafka recovers by itself");
                            continue;
                        }
                        Err(e) => return Err(Error::unavailable(BACKEND, e)),
                    };
                    if let Some(event) = self.assignment.admit(Self::delivery(&message)) {
                        return Ok(event);
                    }
                }
            }
        }
    }

    async fn commit(&self, partition: i32, offset: i64) -> Result<()> {
        if !self.assignment.owns(partition) {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.assignment.topic,
            partition,
            Offset::Offset(offset.saturating_add(1)),
        )
        .map_err(|e| Error::unavailable(BACKEND, e))?;
        self.consumer()?
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| Error::unavailable(BACKEND, e))
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            watch.abort();
        }
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        // Closing commits nothing new (auto-commit is off) but waits for
        // outstanding commits and the group leave: keep that off the async
        // workers when there are any.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}
