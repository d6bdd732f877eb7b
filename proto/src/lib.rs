//! Courier's wire contracts: the protobuf messages shared by every service,
//! the gRPC services between them, the sans-io frame codec clients and
//! comets speak over TCP, the push frames spliced from encoded messages, and
//! the rules for the names the protocol carries (uids, rooms, keys).
//!
//! Nothing here opens a socket: the codec turns bytes into frames and back,
//! so it can be tested and fuzzed on its own.

pub mod codec;
pub mod names;
pub mod position;
pub mod push;
pub mod splice;

/// Client <-> comet frames (`client.proto`).
pub mod client {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("courier.client");
    // serde in proto3's canonical JSON mapping (the `courier.json`
    // WebSocket subprotocol).
    include!(concat!(env!("OUT_DIR"), "/courier.client.serde.rs"));
}

/// The comet's gRPC push service (`comet.proto`).
pub mod comet {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("courier.comet");
}

/// Logic's gRPC service for comets (`logic.proto`).
pub mod logic {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("courier.logic");
}

/// The queue envelope from logic to job (`queue.proto`).
pub mod queue {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("courier.queue");
}

pub use codec::{encode_frame, CodecError, FrameCodec, DEFAULT_MAX_FRAME};
pub use position::Position;
pub use push::{
    encode_message, encode_push, encode_sync_reply, with_position, MessageTooLarge, PUSH_OVERHEAD,
};

/// Well-known `op` codes. Applications may use any other value.
pub mod op {
    /// A chat message whose `data` is UTF-8 text.
    pub const CHAT: u32 = 1;
}

impl client::Target {
    /// A target naming one user.
    pub fn user(uid: impl Into<String>) -> Self {
        Self {
            kind: Some(client::target::Kind::User(uid.into())),
        }
    }
    /// A target naming one room.
    pub fn room(room: impl Into<String>) -> Self {
        Self {
            kind: Some(client::target::Kind::Room(room.into())),
        }
    }
    /// A target naming one connection key.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            kind: Some(client::target::Kind::Key(key.into())),
        }
    }
    /// A target naming everyone.
    pub fn all() -> Self {
        Self {
            kind: Some(client::target::Kind::All(true)),
        }
    }
}

impl client::Frame {
    /// A frame with the given id and body.
    pub fn new(id: u64, body: client::frame::Body) -> Self {
        Self {
            id,
            body: Some(body),
        }
    }
    /// An `Error` frame.
    pub fn error(id: u64, code: client::ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            id,
            client::frame::Body::Error(client::Error {
                code: code as i32,
                message: message.into(),
            }),
        )
    }
}
