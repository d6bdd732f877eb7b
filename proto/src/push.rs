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
//! so clients decode it as any other frame. [`encode_sync_reply`] does the
//! same for a page of a stream (`SyncReply.messages` is field 3).
//!
//! A message's place in its stream (seq, epoch) is assigned after logic
//! encoded it, when the store takes it: [`with_position`] appends the two
//! fields to the encoded bytes (protobuf fields may come in any order, and a
//! message encoded with seq 0 has neither), so nothing is encoded again.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message as _;

use crate::client::{Message, SyncReply};
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

/// The field numbers of `Message.seq` and `Message.epoch`.
const SEQ_FIELD: u32 = 2;
const EPOCH_FIELD: u32 = 8;
/// The field numbers of `Frame.id`, `Frame.sync_reply` and `SyncReply.messages`.
const FRAME_ID_FIELD: u32 = 1;
const SYNC_REPLY_FIELD: u32 = 26;
const SYNC_MESSAGES_FIELD: u32 = 3;

/// `message` (encoded with seq and epoch unset) with its place in a stream:
/// the same bytes with the `seq` and `epoch` fields appended.
pub fn with_position(message: &[u8], seq: u64, epoch: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 2 * (1 + 10));
    out.put_slice(message);
    encode_key(SEQ_FIELD, WireType::Varint, &mut out);
    encode_varint(seq, &mut out);
    encode_key(EPOCH_FIELD, WireType::Varint, &mut out);
    encode_varint(epoch, &mut out);
    out.freeze()
}

/// A `SyncReply` frame (length prefix included) with frame id `id`: `reply`
/// (its own `messages` left empty) followed by as many of the encoded
/// `messages` as fit in `max_frame`, in order. Returns the frame and how
/// many messages it carries; the client syncs again for the rest.
pub fn encode_sync_reply(
    id: u64,
    reply: &SyncReply,
    messages: &[Bytes],
    max_frame: usize,
) -> (Bytes, usize) {
    let id_len = if id == 0 {
        0
    } else {
        key_len(FRAME_ID_FIELD) + encoded_len_varint(id)
    };
    let frame_len = |reply_len: usize| {
        id_len + key_len(SYNC_REPLY_FIELD) + encoded_len_varint(reply_len as u64) + reply_len
    };
    let base = reply.encoded_len();
    let mut taken = 0;
    let mut reply_len = base;
    for message in messages {
        let entry = repeated_len(SYNC_MESSAGES_FIELD, std::slice::from_ref(message));
        if frame_len(reply_len + entry) > max_frame {
            break;
        }
        reply_len += entry;
        taken += 1;
    }
    let body = frame_len(reply_len);
    let mut frame = BytesMut::with_capacity(LEN_PREFIX + body);
    frame.put_u32(u32::try_from(body).unwrap_or(u32::MAX));
    if id != 0 {
        encode_key(FRAME_ID_FIELD, WireType::Varint, &mut frame);
        encode_varint(id, &mut frame);
    }
    encode_key(SYNC_REPLY_FIELD, WireType::LengthDelimited, &mut frame);
    encode_varint(reply_len as u64, &mut frame);
    reply.encode_raw(&mut frame);
    put_repeated(&mut frame, SYNC_MESSAGES_FIELD, &messages[..taken]);
    (frame.freeze(), taken)
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
    fn a_position_is_appended_not_encoded_again() {
        let plain = message("a", 5);
        let plain = Message { seq: 0, ..plain };
        let stamped = with_position(&encode_message(&plain), 7, 42);
        let back = Message::decode(stamped).unwrap();
        assert_eq!((back.seq, back.epoch), (7, 42));
        assert_eq!(
            Message {
                seq: 0,
                epoch: 0,
                ..back
            },
            plain
        );
    }

    #[test]
    fn a_spliced_sync_reply_is_what_prost_encodes_and_fits() {
        use crate::client::StreamHead;
        let messages: Vec<Message> = (0..5).map(|i| message(&i.to_string(), 300)).collect();
        let encoded: Vec<Bytes> = messages.iter().map(encode_message).collect();
        let reply = SyncReply {
            room: "r".into(),
            head: Some(StreamHead {
                epoch: 9,
                last_seq: 10,
                first_seq: 1,
            }),
            messages: vec![],
            gap: true,
            reset: false,
        };
        let (frame, taken) = encode_sync_reply(12, &reply, &encoded, 64 * 1024);
        assert_eq!(taken, 5);
        let full = SyncReply {
            messages: messages.clone(),
            ..reply.clone()
        };
        // The messages come after `gap` here (prost writes fields in number
        // order): the same frame to any decoder, and the same length.
        let expected = encode_frame(&Frame::new(12, Body::SyncReply(full)));
        assert_eq!(frame.len(), expected.len());
        let mut codec = FrameCodec::default();
        let decode = |b: &Bytes, codec: &mut FrameCodec| {
            codec.decode(&mut BytesMut::from(&b[..])).unwrap().unwrap()
        };
        assert_eq!(decode(&frame, &mut codec), decode(&expected, &mut codec));

        let (small, taken) = encode_sync_reply(0, &reply, &encoded, 1024);
        assert!(taken < 5 && taken > 0, "{taken}");
        assert!(small.len() - LEN_PREFIX <= 1024);
        let mut buf = BytesMut::from(&small[..]);
        let Some(Body::SyncReply(got)) = FrameCodec::new(1024)
            .decode(&mut buf)
            .unwrap()
            .unwrap()
            .body
        else {
            panic!("not a sync reply")
        };
        assert_eq!(got.messages, messages[..taken].to_vec());
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
