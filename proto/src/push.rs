//! `Push` frames spliced from messages that are already encoded.
//!
//! Logic encodes each `Message` once; the queue, job and the comet's gRPC
//! service carry those bytes. A `Push` body is its field 1 (`messages`)
//! repeated, and a `Frame` with id 0 is just its `push` field (16), so a push
//! frame is, byte for byte:
//!
//! ```text
//! u32 length | 0x82 0x01 | varint push_len | ( 0x0A | varint len | message )*
//! ```
//!
//! [`encode_push`] writes exactly that, copying each message's bytes once and
//! decoding none, and splits a batch so no frame exceeds `max_frame`. The
//! result is what prost would encode for the same `Frame` (a test checks it),
//! so clients decode it as any other frame.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message as _;

use crate::client::Message;
use crate::splice::{put_repeated, repeated_len};

/// The key of `Frame.push` (field 16, length-delimited), as a varint.
const PUSH_FIELD: [u8; 2] = [0x82, 0x01];
/// The field number of `Push.messages`.
const MESSAGES_FIELD: u32 = 1;
/// Bytes of the length prefix in front of every frame on TCP.
const LEN_PREFIX: usize = 4;

/// The most a push frame's body adds around its entries: the `push` field
/// key and the longest varint length.
pub const PUSH_OVERHEAD: usize = PUSH_FIELD.len() + 5;

/// A message too large to fit in any frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message of {len} bytes does not fit in a {max_frame}-byte frame")]
pub struct MessageTooLarge {
    /// The encoded message's length.
    pub len: usize,
    /// The frame limit it was checked against.
    pub max_frame: usize,
}

/// Encodes a message for the queue, the comets and the inbox: once.
pub fn encode_message(message: &Message) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// What one entry of `Push.messages` costs: key, length and bytes.
fn entry_len(message: &Bytes) -> usize {
    repeated_len(MESSAGES_FIELD, std::slice::from_ref(message))
}

/// The frame body length for entries totalling `push_len` bytes.
fn frame_len(push_len: usize) -> usize {
    PUSH_FIELD.len() + encoded_len_varint(push_len as u64) + push_len
}

/// Splices encoded `messages` into as few `Push` frames (length prefix
/// included) as fit in `max_frame` bytes each, in order. Each frame is one
/// `Bytes`, ready to be queued to any number of connections.
pub fn encode_push(messages: &[Bytes], max_frame: usize) -> Result<Vec<Bytes>, MessageTooLarge> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut push_len = 0;
    for (i, message) in messages.iter().enumerate() {
        let entry = entry_len(message);
        if frame_len(entry) > max_frame {
            return Err(MessageTooLarge {
                len: message.len(),
                max_frame,
            });
        }
        if frame_len(push_len + entry) > max_frame {
            frames.push(splice(&messages[start..i], push_len));
            start = i;
            push_len = 0;
        }
        push_len += entry;
    }
    if start < messages.len() {
        frames.push(splice(&messages[start..], push_len));
    }
    Ok(frames)
}

fn splice(messages: &[Bytes], push_len: usize) -> Bytes {
    let body = frame_len(push_len);
    let mut frame = BytesMut::with_capacity(LEN_PREFIX + body);
    // `body` is at most `max_frame`, which a caller keeps far below 4 GiB.
    frame.put_u32(u32::try_from(body).unwrap_or(u32::MAX));
    frame.put_slice(&PUSH_FIELD);
    encode_varint(push_len as u64, &mut frame);
    put_repeated(&mut frame, MESSAGES_FIELD, messages);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::client::{frame::Body, Frame, Push, Target};
    use crate::codec::{encode_frame, FrameCodec};
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    fn message(id: &str, len: usize) -> Message {
        Message {
            msg_id: id.into(),
            seq: 3,
            to: Some(Target::room("r")),
            data: vec![7u8; len].into(),
            ..Default::default()
        }
    }

    fn decode_ids(frames: &[Bytes], max_frame: usize) -> Vec<String> {
        let mut codec = FrameCodec::new(max_frame);
        let mut ids = Vec::new();
        for f in frames {
            let mut buf = BytesMut::from(&f[..]);
            let Some(Body::Push(push)) = codec.decode(&mut buf).unwrap().unwrap().body else {
                panic!("not a push");
            };
            assert!(buf.is_empty(), "one frame per Bytes");
            ids.extend(push.messages.into_iter().map(|m| m.msg_id));
        }
        ids
    }

    #[test]
    fn a_spliced_frame_is_what_prost_encodes() {
        let messages = vec![message("a", 10), message("b", 300), message("c", 0)];
        let encoded: Vec<Bytes> = messages.iter().map(encode_message).collect();
        let frames = encode_push(&encoded, 64 * 1024).unwrap();
        let expected = encode_frame(&Frame::new(0, Body::Push(Push { messages })));
        assert_eq!(frames, vec![expected]);
    }

    #[test]
    fn batches_are_split_to_fit_max_frame() {
        let max = 1024;
        let encoded: Vec<Bytes> = (0..10)
            .map(|i| encode_message(&message(&i.to_string(), 300)))
            .collect();
        let frames = encode_push(&encoded, max).unwrap();
        assert!(frames.len() > 1);
        assert!(frames.iter().all(|f| f.len() - LEN_PREFIX <= max));
        let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(decode_ids(&frames, max), want);
    }

    #[test]
    fn a_message_larger_than_a_frame_is_refused() {
        let big = encode_message(&message("big", 2000));
        let err = encode_push(std::slice::from_ref(&big), 1024).unwrap_err();
        assert_eq!(err.len, big.len());
        assert!(encode_push(&[], 1024).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn every_split_decodes_to_the_same_messages(
            sizes in proptest::collection::vec(0usize..600, 0..20),
            max in 700usize..3000,
        ) {
            let encoded: Vec<Bytes> = sizes
                .iter()
                .enumerate()
                .map(|(i, len)| encode_message(&message(&i.to_string(), *len)))
                .collect();
            let frames = encode_push(&encoded, max).unwrap();
            prop_assert!(frames.iter().all(|f| f.len() - LEN_PREFIX <= max));
            let want: Vec<String> = (0..sizes.len()).map(|i| i.to_string()).collect();
            prop_assert_eq!(decode_ids(&frames, max), want);
        }
    }
}
