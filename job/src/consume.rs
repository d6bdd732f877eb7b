//! The consumer loop: queue in, worker queues out, commits back.
//!
//! One task owns the consumer's read side, the offset [`Tracker`] and the
//! commits, so none of them needs a lock. It waits on three things:
//! - shutdown;
//! - [`Done`]s from the workers (a delivery's every push answered): it marks
//!   them in the tracker and commits whatever prefix became complete;
//! - the next queue event, fetched only while an in-flight permit is free
//!   (at most `max_in_flight` deliveries alive), so a stalled comet stops
//!   consumption instead of growing memory.
//!
//! The next-event future is kept across loop turns rather than recreated, so
//! a `Done` arriving while the consumer waits never cancels a half-done
//! `next()` call.

use std::sync::Arc;
use std::time::Duration;

use courier_cluster::{Consumer, ConsumerEvent, Delivery};
use courier_proto::queue::envelope::Kind;
use courier_proto::queue::{BroadcastPush, Envelope, KeysPush, KickKeys, RoomPush};
use courier_runtime::backoff::Backoff;
use futures::future::BoxFuture;
use futures::FutureExt;
use prost::Message as _;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::comets::Roster;
use crate::push::{CometPush, WorkItem};
use crate::ticket::{Done, Ticket};
use crate::tracker::Tracker;
use crate::JobError;

/// Pause after a failed `next()` before trying again, doubling up to the max.
const FETCH_RETRY_MIN: Duration = Duration::from_millis(100);
const FETCH_RETRY_MAX: Duration = Duration::from_secs(1);

type Incoming<'a> = BoxFuture<'a, Result<(ConsumerEvent, OwnedSemaphorePermit), JobError>>;

/// Waits for an in-flight permit, then for the next queue event. Transient
/// queue errors are retried here; only a closed consumer ends it.
async fn fetch(
    consumer: &dyn Consumer,
    in_flight: Arc<Semaphore>,
) -> Result<(ConsumerEvent, OwnedSemaphorePermit), JobError> {
    let permit = in_flight
        .acquire_owned()
        .await
        .map_err(|_| JobError::ConsumerClosed)?;
    let mut pauses = Backoff::new(FETCH_RETRY_MIN, FETCH_RETRY_MAX);
    loop {
        match consumer.next().await {
            Ok(event) => return Ok((event, permit)),
            Err(courier_cluster::Error::Closed) => return Err(JobError::ConsumerClosed),
            Err(e) => {
                metrics::counter!("courier_job_consume_errors_total").increment(1);
                let pause = pauses.next_delay();
                tracing::warn!(error = %e, retry_in = ?pause, "consuming failed; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The consumer loop's state.
pub(crate) struct Consumption {
    tracker: Tracker,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    roster: watch::Receiver<Roster>,
}

impl Consumption {
    /// A loop that lets at most `max_in_flight` deliveries be alive and
    /// delivers to the comets of `roster`.
    pub(crate) fn new(max_in_flight: usize, roster: watch::Receiver<Roster>) -> Self {
        // The Done channel needs no bound of its own: every Done holds one of
        // the `max_in_flight` permits until it is read.
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            tracker: Tracker::new(),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            done_tx,
            done_rx,
            roster,
        }
    }

    /// Consumes until `shutdown` fires (Ok) or the consumer closes.
    pub(crate) async fn run(
        &mut self,
        consumer: &dyn Consumer,
        shutdown: &CancellationToken,
    ) -> Result<(), JobError> {
        let mut incoming: Incoming<'_> = fetch(consumer, self.in_flight.clone()).boxed();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(done) = self.done_rx.recv() => {
                    self.complete(done);
                    self.commit(consumer).await;
                }
                event = &mut incoming => {
                    incoming = fetch(consumer, self.in_flight.clone()).boxed();
                    match event? {
                        (ConsumerEvent::Message(delivery), permit) => {
                            self.dispatch(delivery, permit, shutdown).await;
                        }
                        (ConsumerEvent::Assigned(partitions), _) => {
                            tracing::info!(?partitions, "partitions assigned");
                            self.tracker.assign(&partitions);
                        }
                        (ConsumerEvent::Revoked(partitions), _) => {
                            tracing::info!(?partitions, "partitions revoked; dropping their tracking");
                            self.tracker.revoke(&partitions);
                        }
                    }
                }
            }
        }
    }

    /// After [`run`](Self::run): waits until every delivery handed to the
    /// workers has finished, or until `deadline`, committing as they finish.
    /// The comets' queues must be closed first, or the workers never end.
    pub(crate) async fn drain(mut self, consumer: &dyn Consumer, deadline: Instant) {
        // Only the deliveries themselves may keep the Done channel open now.
        drop(self.done_tx);
        drop(self.roster);
        let timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                done = self.done_rx.recv() => match done {
                    Some(done) => {
                        Self::mark(&mut self.tracker, done);
                        while let Ok(done) = self.done_rx.try_recv() {
                            Self::mark(&mut self.tracker, done);
                        }
                        Self::commit_ready(&mut self.tracker, consumer).await;
                    }
                    None => break,
                },
                _ = &mut timeout => {
                    tracing::warn!(
                        pending = self.tracker.pending(),
                        "drain deadline passed; unfinished deliveries stay uncommitted"
                    );
                    break;
                }
            }
        }
        Self::commit_ready(&mut self.tracker, consumer).await;
    }

    /// Marks `done` and every other Done already waiting.
    fn complete(&mut self, done: Done) {
        Self::mark(&mut self.tracker, done);
        while let Ok(done) = self.done_rx.try_recv() {
            Self::mark(&mut self.tracker, done);
        }
        let alive = self
            .max_in_flight
            .saturating_sub(self.in_flight.available_permits());
        metrics::gauge!("courier_job_in_flight").set(alive as f64);
    }

    fn mark(tracker: &mut Tracker, done: Done) {
        tracker.complete(done.partition, done.offset, done.epoch);
        // Dropping `done` here releases its in-flight permit.
    }

    async fn commit(&mut self, consumer: &dyn Consumer) {
        Self::commit_ready(&mut self.tracker, consumer).await;
    }

    /// Commits every partition whose done prefix moved. A failed commit is
    /// retried with the next batch of completions (or at shutdown).
    async fn commit_ready(tracker: &mut Tracker, consumer: &dyn Consumer) {
        for (partition, offset, epoch) in tracker.ready() {
            match consumer.commit(partition, offset).await {
                Ok(()) => {
                    tracker.committed(partition, offset, epoch);
                    metrics::counter!("courier_job_commits_total").increment(1);
                }
                Err(e) => {
                    metrics::counter!("courier_job_commit_errors_total").increment(1);
                    tracing::warn!(partition, offset, error = %e, "commit failed; will retry");
                }
            }
        }
    }

    /// Decodes one message and hands it to the workers of the comets it
    /// names.
    async fn dispatch(
        &mut self,
        delivery: Delivery,
        permit: OwnedSemaphorePermit,
        shutdown: &CancellationToken,
    ) {
        metrics::counter!("courier_job_envelopes_consumed_total").increment(1);
        let Delivery {
            partition,
            offset,
            payload,
            ..
        } = delivery;
        let epoch = self.tracker.track(partition, offset);
        // The loop's own share: finished once every comet's share exists, so
        // a delivery can never look done while it is still being fanned out.
        let ticket = Ticket::new(partition, offset, epoch, permit, self.done_tx.clone());
        let kind = match Envelope::decode(payload) {
            Ok(Envelope { kind: Some(kind) }) => kind,
            Ok(Envelope { kind: None }) => {
                return invalid(ticket, partition, offset, "empty envelope")
            }
            Err(e) => {
                return invalid(
                    ticket,
                    partition,
                    offset,
                    &format!("undecodable envelope: {e}"),
                );
            }
        };
        let roster = self.roster.borrow().clone();
        let no_message = match &kind {
            Kind::Keys(KeysPush { message, .. })
            | Kind::Room(RoomPush { message, .. })
            | Kind::Broadcast(BroadcastPush { message, .. }) => message.is_empty(),
            Kind::Kick(_) => false,
        };
        if no_message {
            return invalid(ticket, partition, offset, "push without a message");
        }
        // The message stays the bytes logic encoded: every comet's share is
        // a reference to the same buffer (the consumed payload itself).
        match kind {
            Kind::Keys(KeysPush {
                comet_id,
                keys,
                message,
            }) => {
                let push = CometPush::Keys { keys, message };
                hand(&roster, &comet_id, push, ticket.share(), shutdown).await;
            }
            Kind::Room(RoomPush {
                room,
                mut comet_ids,
                message,
            }) => {
                comet_ids.sort_unstable();
                comet_ids.dedup();
                for comet_id in &comet_ids {
                    let push = CometPush::Room {
                        room: room.clone(),
                        message: message.clone(),
                    };
                    hand(&roster, comet_id, push, ticket.share(), shutdown).await;
                }
            }
            // Each comet gets the broadcast at once, best effort, as
            // DESIGN.md says of broadcast, and paces its own connections.
            Kind::Broadcast(BroadcastPush { message, rate }) => {
                for comet_id in roster.keys() {
                    let push = CometPush::Broadcast {
                        message: message.clone(),
                        rate,
                    };
                    hand(&roster, comet_id, push, ticket.share(), shutdown).await;
                }
            }
            Kind::Kick(KickKeys {
                comet_id,
                keys,
                reason,
            }) => {
                let push = CometPush::Kick { keys, reason };
                hand(&roster, &comet_id, push, ticket.share(), shutdown).await;
            }
        }
        ticket.finish();
    }
}

/// Counts and logs a message job cannot deliver, and lets it be committed:
/// it would fail the same way forever and must not wedge its partition.
fn invalid(ticket: Ticket, partition: i32, offset: i64, why: &str) {
    metrics::counter!("courier_job_envelopes_invalid_total").increment(1);
    tracing::warn!(partition, offset, why, "skipping invalid queue message");
    ticket.finish();
}

/// Queues `push` on `comet_id`'s worker. A full queue is waited on for at
/// most the comet's `queue_wait`, and not at all while the comet is behind
/// (its queue overflowed and has not drained yet): one stuck comet must not
/// stall the dispatch to every other. A push not queued is skipped (its
/// recipients read it from their inbox when they resync). A comet not (or no
/// longer) in discovery is skipped too: its clients have reconnected
/// elsewhere. At shutdown the share is dropped unfinished, so the message is
/// not committed.
async fn hand(
    roster: &Roster,
    comet_id: &str,
    push: CometPush,
    ticket: Ticket,
    shutdown: &CancellationToken,
) {
    let Some(comet) = roster.get(comet_id) else {
        metrics::counter!("courier_job_skipped_total", "reason" => "unknown_comet").increment(1);
        tracing::debug!(
            comet = comet_id,
            "skipping push to a comet not in discovery"
        );
        ticket.finish();
        return;
    };
    let item = WorkItem { push, ticket };
    let item = match comet.queue.try_send(item) {
        Ok(()) => return,
        Err(mpsc::error::TrySendError::Closed(item)) => return skipped_gone(item.ticket),
        Err(mpsc::error::TrySendError::Full(item)) => item,
    };
    if comet.backlog.is_behind() {
        return skipped_behind(item.ticket);
    }
    tokio::select! {
        biased;
        slot = tokio::time::timeout(comet.queue_wait, comet.queue.reserve()) => match slot {
            Ok(Ok(slot)) => slot.send(item),
            Ok(Err(_)) => skipped_gone(item.ticket),
            Err(_) => {
                if comet.backlog.fell_behind() {
                    tracing::warn!(
                        comet = comet_id,
                        "comet's queue stays full; skipping its pushes until it catches up"
                    );
                }
                skipped_behind(item.ticket);
            }
        },
        _ = comet.gone.cancelled() => skipped_gone(item.ticket),
        _ = shutdown.cancelled() => drop(item),
    }
}

fn skipped_behind(ticket: Ticket) {
    metrics::counter!("courier_job_skipped_total", "reason" => "comet_behind").increment(1);
    ticket.finish();
}

fn skipped_gone(ticket: Ticket) {
    metrics::counter!("courier_job_skipped_total", "reason" => "comet_gone").increment(1);
    ticket.finish();
}
