//! What the driver task publishes to the [`crate::Client`] handles: the
//! current connection (key, comet), the rooms to be in, the token, and why
//! the driver stopped once it has. The driver writes it; handles read a
//! snapshot under a short lock, never across an await.

use std::collections::HashMap;

use courier_proto::Position;
use parking_lot::Mutex;

/// Why the driver stopped for good.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    Closed,
    Kicked(String),
}

/// The connection as the handles see it.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    pub(crate) key: Option<String>,
    pub(crate) comet_id: Option<String>,
    /// Rooms to be in: config rooms plus joined, minus left.
    pub(crate) rooms: Vec<String>,
    pub(crate) token: String,
    pub(crate) ended: Option<Ended>,
    /// The last inbox message shown, and each room's.
    pub(crate) inbox: Position,
    pub(crate) room_positions: HashMap<String, Position>,
}

/// State shared by the handles and the driver.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) uid: String,
    pub(crate) conn: Mutex<ConnState>,
}
