//! Following the queue's health: `/readyz` while the brokers are away, and
//! a resync when messages may not have reached connected devices.
//!
//! The queue probes its brokers itself ([`courier_cluster::queue::QueueHealth`]).
//! While none answers, logic's `/readyz` says `not ready: queue
//! unreachable` (pushes are refused at once meanwhile, see `publish`).
//! Two things leave messages stored but never delivered live:
//!
//! - the queue lost messages it had taken (a broker that came back without
//!   its log): the health's `losses` goes up;
//! - a publish failed after its message was stored (the broker died
//!   between the two): the publisher's `stranded` count goes up.
//!
//! Either way, once the brokers answer, this logic asks every comet to
//! `Resync` (see [`crate::resync`]): each client is told where its streams
//! stand and syncs what it has not seen from the store of record, live,
//! without waiting for its next message or session check. Duplicates this
//! causes are dropped by seq on the client, as always.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::resync::resync_all;
use crate::state::LogicState;

/// What `/readyz` says while no broker answers.
pub(crate) const UNREACHABLE: &str = "queue unreachable";

/// Follows the queue until `stop`.
pub(crate) async fn watch_queue(shared: Arc<LogicState>, stop: CancellationToken) {
    let mut health = shared.publisher.queue_health();
    let mut stranded = shared.publisher.stranded();
    let mut losses = health.borrow().losses;
    // A resync is owed: it is made once the brokers answer.
    let mut owed = false;
    loop {
        let now = *health.borrow_and_update();
        shared.readiness.set_blocked(UNREACHABLE, !now.reachable);
        if now.losses > losses {
            tracing::warn!(
                losses = now.losses - losses,
                "the queue lost messages; every client will sync what it missed"
            );
            losses = now.losses;
            owed = true;
        }
        if owed && now.reachable {
            owed = false;
            metrics::counter!("courier_logic_queue_resyncs_total").increment(1);
            resync_all(&shared).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = health.changed() => if changed.is_err() { return },
            changed = stranded.changed() => {
                if changed.is_err() { return }
                stranded.borrow_and_update();
                owed = true;
            }
        }
    }
}
