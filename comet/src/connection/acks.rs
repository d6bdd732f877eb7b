//! A connection's acks, coalesced: however fast a client acks, at most one
//! `Ack` call to logic is in flight, and it carries the latest position.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use courier_proto::logic::AckRequest;
use courier_proto::Position;
use parking_lot::Mutex;

use crate::logic_client::LogicPool;

/// The latest ack not yet sent, and whether a sender runs.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    latest: Mutex<Option<Position>>,
    sending: AtomicBool,
}

/// Who is acking, as logic names it.
#[derive(Debug, Clone)]
pub(crate) struct Acker {
    pub(crate) comet_id: String,
    pub(crate) uid: String,
    pub(crate) key: String,
}

impl Acks {
    /// Records an ack of `at`; returns whether the caller must start a
    /// sender ([`Acks::send`]).
    pub(crate) fn record(&self, at: Position) -> bool {
        let mut latest = self.latest.lock();
        match *latest {
            Some(l) if l.epoch == at.epoch && l.seq >= at.seq => {}
            _ => *latest = Some(at),
        }
        drop(latest);
        !self.sending.swap(true, Ordering::AcqRel)
    }

    /// Sends the latest ack until none is left.
    pub(crate) async fn send(self: Arc<Self>, logic: Arc<LogicPool>, who: Acker) {
        loop {
            let next = self.latest.lock().take();
            let Some(at) = next else {
                self.sending.store(false, Ordering::Release);
                // An ack recorded between the take and the store found a
                // sender running and did not start one: take it over.
                if self.latest.lock().is_some() && !self.sending.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            };
            let request = AckRequest {
                comet_id: who.comet_id.clone(),
                uid: who.uid.clone(),
                key: who.key.clone(),
                epoch: at.epoch,
                seq: at.seq,
            };
            if let Err(e) = logic.ack(request).await {
                tracing::debug!(key = %who.key, error = %e, "ack not recorded");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_coalesce_to_the_latest() {
        let acks = Acks::default();
        assert!(
            acks.record(Position::new(7, 3)),
            "the first ack starts a sender"
        );
        assert!(!acks.record(Position::new(7, 5)), "a sender runs already");
        assert!(
            !acks.record(Position::new(7, 4)),
            "lower ack of the same epoch is ignored"
        );
        assert_eq!(*acks.latest.lock(), Some(Position::new(7, 5)));
        assert!(
            !acks.record(Position::new(9, 1)),
            "a new epoch replaces the old"
        );
        assert_eq!(*acks.latest.lock(), Some(Position::new(9, 1)));
    }
}
