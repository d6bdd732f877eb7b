//! Keys pushes queued back to back leave as one `PushKeysBatch`.
//!
//! The run is taken from what is already queued, never waited for: an idle
//! comet sees a lone `PushKeys` at once, a busy one gets batches as large as
//! its backlog (up to the bounds below).

use bytes::Bytes;
use tokio::sync::mpsc;

use super::call::Call;
use crate::push::{CometPush, WorkItem};
use crate::ticket::Ticket;

/// Most keys pushes sent in one `PushKeysBatch` (a comet takes up to 1024).
pub(super) const KEYS_BATCH_MAX: usize = 256;

/// A keys batch stops growing once its entries reach this many bytes, well
/// below gRPC's default 4 MiB message limit.
pub(super) const KEYS_BATCH_BYTES: usize = 1 << 20;

/// Takes the keys pushes queued right behind `first` (without waiting) into
/// one call; the first other item taken ends the run and goes to `next`.
pub(super) fn keys_run(
    rx: &mut mpsc::Receiver<WorkItem>,
    next: &mut Option<WorkItem>,
    first: Bytes,
    ticket: Ticket,
) -> (Call, Vec<Ticket>) {
    let mut bytes = first.len();
    let mut entries = vec![first];
    let mut tickets = vec![ticket];
    while entries.len() < KEYS_BATCH_MAX && bytes < KEYS_BATCH_BYTES {
        match rx.try_recv() {
            Ok(WorkItem {
                push: CometPush::Keys { keys, message },
                ticket,
            }) => {
                let entry = Call::keys_entry(keys, message);
                bytes += entry.len();
                entries.push(entry);
                tickets.push(ticket);
            }
            Ok(other) => {
                *next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    (Call::keys(entries), tickets)
}
