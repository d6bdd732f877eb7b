//! What job delivers to one comet: the one type between the queue envelope
//! and the gRPC call.
//!
//! The consumer loop turns each envelope into one [`CometPush`] per comet it
//! names and queues it to that comet's worker; the worker turns pushes into
//! calls (batching room messages and runs of keys pushes). A message is the
//! bytes logic encoded, carried as `Bytes`: sharing it with several comets,
//! or with a retry, copies nothing.

use bytes::Bytes;

use crate::ticket::Ticket;

/// What to deliver to one comet.
#[derive(Debug)]
pub(crate) enum CometPush {
    /// An encoded message to the named connections.
    Keys { keys: Vec<String>, message: Bytes },
    /// An encoded message to every member of a room (batched).
    Room { room: String, message: Bytes },
    /// An encoded message to every connection, `rate` connections a
    /// second on each comet (0: all at once).
    Broadcast { message: Bytes, rate: u32 },
    /// Close the named connections.
    Kick { keys: Vec<String>, reason: String },
}

/// One entry of a worker's queue.
#[derive(Debug)]
pub(crate) struct WorkItem {
    pub(crate) push: CometPush,
    /// Finished once the comet answered (or left).
    pub(crate) ticket: Ticket,
}
