//! Courier frames over WebSocket, for browsers and any WebSocket tool.
//!
//! One WebSocket message is one `Frame`, with no length prefix, in one of
//! two subprotocols:
//!
//! - [`PROTOBUF`] (`courier.protobuf`): binary messages, the frame's
//!   protobuf encoding.
//! - [`JSON`] (`courier.json`): text messages, the frame in proto3's
//!   canonical JSON mapping (`bytes` as base64, 64-bit integers as
//!   strings, enums by name), so a page or `websocat` needs no protobuf
//!   library.
//!
//! [`FrameSocket`] turns a WebSocket into the byte stream the TCP protocol
//! speaks (each frame behind its 4-byte length prefix), so the comet's
//! connection handler and the SDK's client serve WebSocket connections
//! with the code they run for TCP: the same handshake, heartbeats, limits
//! and error codes.

mod budget;
mod json;
mod socket;

pub use budget::ReadBudget;
pub use json::{frame_from_json, frame_to_json, JsonError};
pub use socket::FrameSocket;
pub use tokio_tungstenite;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes a WebSocket reads at a time, and its read buffer's first size.
/// tungstenite's default allocates 128 KiB per socket up front, which an
/// idle connection never needs; a larger message grows the buffer to its
/// own size (at most `max_frame`).
const READ_BUFFER: usize = 4 * 1024;
/// Frames a WebSocket buffers before it writes them (a flush writes
/// sooner); the buffer grows only while frames wait in it.
const WRITE_BUFFER: usize = 64 * 1024;

/// The WebSocket settings of both ends: messages and frames at most
/// `max_frame` bytes (refused before they are buffered), and small buffers.
pub fn config(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
}

/// The binary subprotocol: one protobuf-encoded `Frame` per message.
pub const PROTOBUF: &str = "courier.protobuf";
/// The text subprotocol: one JSON-encoded `Frame` per message.
pub const JSON: &str = "courier.json";

/// How frames are written in WebSocket messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// [`PROTOBUF`]: binary messages.
    Protobuf,
    /// [`JSON`]: text messages.
    Json,
}

impl Encoding {
    /// The encoding a subprotocol names; `None` for another one.
    pub fn of_subprotocol(name: &str) -> Option<Encoding> {
        match name.trim() {
            PROTOBUF => Some(Encoding::Protobuf),
            JSON => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The subprotocol's name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }

    /// The first of `offered` (a `Sec-WebSocket-Protocol` header's
    /// comma-separated list) that Courier speaks.
    pub fn choose(offered: &str) -> Option<Encoding> {
        offered.split(',').find_map(Encoding::of_subprotocol)
    }
}
