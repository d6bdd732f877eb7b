//! Messages for tests: built, encoded as logic encodes them, and read back
//! from what a comet or job carried.

use bytes::Bytes;
use courier_proto::client::{frame::Body, Frame, Message};
use courier_proto::encode_message;
use prost::Message as _;

/// A message with id `id`, op 1 and no data; set other fields with struct
/// update syntax: `Message { seq: 3, ..message("a") }`.
pub fn message(id: &str) -> Message {
    Message {
        msg_id: id.into(),
        op: 1,
        ..Default::default()
    }
}

/// A message with id `id` carrying `data`.
pub fn message_with(id: &str, data: &[u8]) -> Message {
    Message {
        data: Bytes::copy_from_slice(data),
        ..message(id)
    }
}

/// [`message`] encoded, as the queue and the comets carry it.
pub fn encoded(id: &str) -> Bytes {
    encode_message(&message(id))
}

/// [`message_with`] encoded.
pub fn encoded_with(id: &str, data: &[u8]) -> Bytes {
    encode_message(&message_with(id, data))
}

/// The ids of encoded messages; panics on bytes that are not a message.
pub fn ids(messages: &[Bytes]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            Message::decode(m.clone())
                .expect("an encoded Message")
                .msg_id
        })
        .collect()
}

/// The message ids of a `Push` frame; panics on any other frame.
pub fn push_ids(frame: &Frame) -> Vec<String> {
    match &frame.body {
        Some(Body::Push(p)) => p.messages.iter().map(|m| m.msg_id.clone()).collect(),
        other => panic!("expected Push, got {other:?}"),
    }
}
