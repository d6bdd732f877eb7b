//! How a delivery learns that every comet push it caused has answered.
//!
//! One consumed message may fan out to several comets. The consumer loop
//! gives each comet's worker a [`Ticket`]; the worker [`finish`]es it once the
//! comet answered or was skipped. When the last ticket of a delivery is gone,
//! a [`Done`] goes back to the consumer loop, which updates the offset
//! tracker and commits.
//!
//! A ticket dropped without `finish` (a task aborted at the shutdown
//! deadline, a push that never reached its worker) marks the whole delivery
//! abandoned: no `Done` is sent and the offset stays uncommitted, so the
//! message is consumed again later. At-least-once is the default, not
//! something every code path must remember.
//!
//! The `Done` carries the delivery's in-flight permit, so the number of
//! deliveries alive anywhere (in workers, or as `Done`s not yet read) never
//! exceeds `max_in_flight`; that is what bounds the `Done` channel.
//!
//! [`finish`]: Ticket::finish

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::tracker::Epoch;

/// A delivery whose every push has answered.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) epoch: Epoch,
    /// Released when the consumer loop has read this.
    _permit: Option<OwnedSemaphorePermit>,
}

/// Where a delivery came from, shared by its tickets.
#[derive(Debug)]
struct Delivery {
    partition: i32,
    offset: i64,
    epoch: Epoch,
    permit: Option<OwnedSemaphorePermit>,
    abandoned: AtomicBool,
    done: mpsc::UnboundedSender<Done>,
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.abandoned.load(Ordering::Acquire) {
            tracing::debug!(
                partition = self.partition,
                offset = self.offset,
                "delivery abandoned; its offset stays uncommitted"
            );
            return;
        }
        // The receiver is gone only when the job has stopped: nothing to do.
        let _ = self.done.send(Done {
            partition: self.partition,
            offset: self.offset,
            epoch: self.epoch,
            _permit: self.permit.take(),
        });
    }
}

/// One share of a delivery: one comet's push, or the consumer loop's own
/// share while it fans the delivery out.
#[derive(Debug)]
pub(crate) struct Ticket {
    delivery: Option<Arc<Delivery>>,
}

impl Ticket {
    /// The first ticket of a consumed message.
    pub(crate) fn new(
        partition: i32,
        offset: i64,
        epoch: Epoch,
        permit: OwnedSemaphorePermit,
        done: mpsc::UnboundedSender<Done>,
    ) -> Self {
        Self {
            delivery: Some(Arc::new(Delivery {
                partition,
                offset,
                epoch,
                permit: Some(permit),
                abandoned: AtomicBool::new(false),
                done,
            })),
        }
    }

    /// Another share of the same delivery, for one more comet.
    pub(crate) fn share(&self) -> Self {
        Self {
            delivery: self.delivery.clone(),
        }
    }

    /// This share is done: its comet answered, or left discovery.
    pub(crate) fn finish(mut self) {
        self.delivery.take();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(d) = self.delivery.take() {
            d.abandoned.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    fn ticket(tx: &mpsc::UnboundedSender<Done>, sem: &Arc<Semaphore>) -> Ticket {
        let mut t = crate::tracker::Tracker::new();
        let epoch = t.track(0, 7);
        let permit = sem.clone().try_acquire_owned().unwrap();
        Ticket::new(0, 7, epoch, permit, tx.clone())
    }

    #[test]
    fn done_only_after_every_share_finished_and_permit_held_until_read() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sem = Arc::new(Semaphore::new(1));
        let first = ticket(&tx, &sem);
        let a = first.share();
        let b = first.share();
        first.finish();
        a.finish();
        assert!(rx.try_recv().is_err());
        b.finish();
        let done = rx.try_recv().unwrap();
        assert_eq!((done.partition, done.offset), (0, 7));
        assert_eq!(sem.available_permits(), 0);
        drop(done);
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn a_dropped_share_abandons_the_delivery() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sem = Arc::new(Semaphore::new(1));
        let first = ticket(&tx, &sem);
        let a = first.share();
        first.finish();
        drop(a);
        assert!(rx.try_recv().is_err());
        assert_eq!(sem.available_permits(), 1);
    }
}
