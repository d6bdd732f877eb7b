//! What the driver tells the application, in order, over one bounded channel.
//!
//! A bounded channel means an application that stops reading stops the
//! driver reading the socket too; the comet then treats the client as a slow
//! consumer and disconnects it, and the driver reconnects and reads what
//! it missed from the inbox. Memory never grows without bound on either
//! side.

use courier_proto::client::Message;
use tokio::sync::mpsc;

/// Capacity of the events channel.
pub(crate) const EVENTS_CAPACITY: usize = 1024;

/// The receiving end of a client's events. Ends (`recv` returns `None`) once
/// the client is closed or kicked.
pub type Events = mpsc::Receiver<Event>;

/// Something that happened on the client's connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Authenticated on a comet (first connect and every reconnect).
    Connected {
        /// The comet's id.
        comet_id: String,
        /// This connection's key.
        key: String,
    },
    /// A message pushed to us: stored messages in seq order per stream
    /// (the inbox, each room), each once.
    Message(Message),
    /// Messages `from_seq..=to_seq` of the inbox (`room` `None`) or a room
    /// were deleted (older than the store's retention) before we read
    /// them: they are lost to us.
    Gap {
        /// The room, or `None` for the inbox.
        room: Option<String>,
        /// The first missing seq.
        from_seq: u64,
        /// The last missing seq.
        to_seq: u64,
    },
    /// The store lost the stream: seqs started again in `epoch`.
    Reset {
        /// The room, or `None` for the inbox.
        room: Option<String>,
        /// The new epoch.
        epoch: u64,
    },
    /// After (re)connecting or re-joining, `count` messages that arrived
    /// while we were away were delivered (as `Message` events, just before).
    Missed {
        /// The room, or `None` for the inbox.
        room: Option<String>,
        /// How many.
        count: usize,
    },
    /// The server took us out of a room (we were removed from its
    /// members); we will not join it again on reconnect.
    RemovedFromRoom {
        /// The room.
        room: String,
    },
    /// The connection was lost; the client is reconnecting.
    Disconnected {
        /// Why, for humans.
        reason: String,
    },
    /// The server closed us on purpose; the client will not reconnect.
    Kicked {
        /// The server's reason.
        reason: String,
    },
    /// An `Error` frame that answered no pending request.
    Error {
        /// An `ErrorCode` value.
        code: i32,
        /// The server's explanation.
        message: String,
    },
}
