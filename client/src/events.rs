//! What the driver tells the application, in order, over one bounded channel.
//!
//! A bounded channel means an application that stops reading stops the
//! driver reading the socket too; the comet then treats the client as a slow
//! consumer and disconnects it, and the driver reconnects. Memory never
//! grows without bound on either side; what the comet dropped is not sent
//! again (there is no inbox yet).

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
    /// A message pushed to us (one event per message, duplicates dropped).
    Message(Message),
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
