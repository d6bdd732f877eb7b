//! The client side of the wire protocol, cheap enough for thousands of
//! connections in one process.
//!
//! A frame on TCP is a `u32` big-endian length and that many bytes of an
//! encoded `Frame` (`proto/proto/client.proto`). Almost every frame a bench
//! connection reads is a `Push`, and most connections only need to know how
//! many messages it carries. So [`scan_frame`] walks the top-level fields of
//! the frame and of its `Push` body (each message is one length-delimited
//! field 1) without decoding or allocating anything; every other frame, and
//! every frame of a sampled connection, is decoded in full with prost.
//!
//! Sans-io, like `courier_proto::codec`: bytes in, answers out. "Not enough
//! bytes yet" is `Ok(None)`, not an error.

use courier_proto::client::{frame::Body, Auth, Frame, Heartbeat};
use courier_proto::encode_frame;

/// Bytes of the length prefix.
const LEN_PREFIX: usize = 4;
/// `Frame.push` field number.
const FRAME_PUSH: u64 = 16;
/// Field numbers of `Frame`'s `body` oneof.
const FRAME_BODY: std::ops::RangeInclusive<u64> = 10..=25;
/// `Push.messages` field number.
const PUSH_MESSAGES: u64 = 1;

/// Why bytes from the server are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces more than the accepted maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The frame body is not valid protobuf.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// The length of the next complete frame body at the start of `buf`, or
/// `None` until all of it has arrived. The body is
/// `buf[4..4 + len]`; [`frame_span`] is the whole frame.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok((buf.len() >= LEN_PREFIX + len).then_some(len))
}

/// Bytes taken by a frame whose body is `len` bytes long.
pub fn frame_span(len: usize) -> usize {
    LEN_PREFIX + len
}

/// What a frame holds, as far as [`scan_frame`] looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    /// A `Push` carrying this many messages.
    Push(usize),
    /// Any other frame; decode it to learn more.
    Other,
}

/// Classifies a frame body and counts a `Push`'s messages by walking
/// top-level fields only.
///
/// It follows protobuf's rules the way prost applies them: a `push` field
/// seen twice is merged (the message counts add up), and another body
/// field after it replaces it.
pub fn scan_frame(body: &[u8]) -> Result<Scanned, WireError> {
    let mut rest = body;
    let mut push: Option<usize> = None;
    while !rest.is_empty() {
        let (field, value) = next_field(&mut rest)?;
        if field == FRAME_PUSH {
            let FieldValue::Bytes(push_body) = value else {
                return Err(WireError::Malformed("push is not length-delimited"));
            };
            let n = count_messages(push_body)?;
            push = Some(push.unwrap_or(0) + n);
        } else if FRAME_BODY.contains(&field) {
            push = None;
        }
    }
    Ok(push.map_or(Scanned::Other, Scanned::Push))
}

/// Messages in an encoded `Push` body.
pub fn count_messages(push_body: &[u8]) -> Result<usize, WireError> {
    let mut rest = push_body;
    let mut n = 0;
    while !rest.is_empty() {
        if let (PUSH_MESSAGES, FieldValue::Bytes(_)) = next_field(&mut rest)? {
            n += 1;
        }
    }
    Ok(n)
}

/// The value of one field; only length-delimited contents are kept.
enum FieldValue<'a> {
    Bytes(&'a [u8]),
    Scalar,
}

/// Reads one field (tag and value) from the front of `buf`.
fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u64, FieldValue<'a>), WireError> {
    let key = varint(buf)?;
    let field = key >> 3;
    if field == 0 {
        return Err(WireError::Malformed("field number 0"));
    }
    let value = match key & 0b111 {
        0 => {
            varint(buf)?;
            FieldValue::Scalar
        }
        1 => {
            take(buf, 8)?;
            FieldValue::Scalar
        }
        2 => {
            let len = usize::try_from(varint(buf)?)
                .map_err(|_| WireError::Malformed("length overflows"))?;
            FieldValue::Bytes(take(buf, len)?)
        }
        5 => {
            take(buf, 4)?;
            FieldValue::Scalar
        }
        _ => return Err(WireError::Malformed("unsupported wire type")),
    };
    Ok((field, value))
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < len {
        return Err(WireError::Malformed("field runs past the frame"));
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, tail)) = buf.split_first() else {
            return Err(WireError::Malformed("truncated varint"));
        };
        *buf = tail;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::Malformed("varint longer than 10 bytes"))
}

/// The encoded `Auth` frame (length prefix included) that joins `room`.
pub fn auth_frame(id: u64, token: &str, room: &str) -> bytes::Bytes {
    encode_frame(&Frame::new(
        id,
        Body::Auth(Auth {
            token: token.to_owned(),
            rooms: vec![room.to_owned()],
            ..Auth::default()
        }),
    ))
}

/// The encoded `Heartbeat` frame (length prefix included).
pub fn heartbeat_frame(id: u64) -> bytes::Bytes {
    encode_frame(&Frame::new(id, Body::Heartbeat(Heartbeat {})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_proto::client::{Error, HeartbeatReply, Message, Push, Target};
    use prost::Message as _;

    fn message(i: usize, data_len: usize) -> Message {
        Message {
            msg_id: format!("m-{i}"),
            seq: i as u64,
            from: String::new(),
            to: Some(Target::room("bench")),
            op: 1001,
            data: vec![b'x'; data_len].into(),
            sent_at_ms: 1_700_000_000_000 + i as i64,
            epoch: 3,
        }
    }

    fn push_frame(n: usize, data_len: usize) -> Frame {
        Frame::new(
            0,
            Body::Push(Push {
                messages: (0..n).map(|i| message(i, data_len)).collect(),
            }),
        )
    }

    fn body(frame: &Frame) -> Vec<u8> {
        frame.encode_to_vec()
    }

    fn prost_count(bytes: &[u8]) -> Option<usize> {
        match Frame::decode(bytes).expect("prost decodes").body {
            Some(Body::Push(p)) => Some(p.messages.len()),
            _ => None,
        }
    }

    #[test]
    fn push_counts_match_prost() {
        // Empty, one, many; small messages and ones whose lengths need
        // multi-byte varints.
        for (n, data_len) in [(0, 0), (1, 0), (1, 64), (7, 200), (300, 5), (3, 20_000)] {
            let bytes = body(&push_frame(n, data_len));
            assert_eq!(scan_frame(&bytes), Ok(Scanned::Push(n)), "n={n}");
            assert_eq!(prost_count(&bytes), Some(n));
        }
        // With a frame id before the body.
        let mut f = push_frame(5, 10);
        f.id = u64::MAX;
        let bytes = body(&f);
        assert_eq!(scan_frame(&bytes), Ok(Scanned::Push(5)));
        assert_eq!(prost_count(&bytes), Some(5));
    }

    #[test]
    fn repeated_push_fields_merge_like_prost() {
        let mut bytes = body(&push_frame(2, 10));
        bytes.extend(body(&push_frame(3, 10)));
        assert_eq!(prost_count(&bytes), Some(5));
        assert_eq!(scan_frame(&bytes), Ok(Scanned::Push(5)));
        // Another body after the push replaces it.
        bytes.extend(body(&Frame::new(
            0,
            Body::HeartbeatReply(HeartbeatReply::default()),
        )));
        assert_eq!(prost_count(&bytes), None);
        assert_eq!(scan_frame(&bytes), Ok(Scanned::Other));
    }

    #[test]
    fn other_frames_are_not_pushes() {
        let frames = [
            Frame::new(9, Body::HeartbeatReply(HeartbeatReply::default())),
            Frame::new(
                0,
                Body::Error(Error {
                    code: 9,
                    message: "slow consumer".into(),
                }),
            ),
            Frame::default(),
        ];
        for f in frames {
            assert_eq!(scan_frame(&body(&f)), Ok(Scanned::Other));
        }
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors_not_panics() {
        let bytes = body(&push_frame(4, 50));
        for cut in 1..bytes.len() {
            // Every strict prefix either fails or (if it ends on a field
            // boundary) counts fewer messages; it never panics.
            match scan_frame(&bytes[..cut]) {
                Ok(Scanned::Push(n)) => assert!(n < 4),
                Ok(Scanned::Other) | Err(_) => {}
            }
        }
        assert!(scan_frame(&[0x00]).is_err());
        assert!(scan_frame(&[0xff; 11]).is_err());
        assert!(scan_frame(&[0x83, 0x01]).is_err()); // field 16, wire type 3
    }

    #[test]
    fn splits_length_prefixed_frames() {
        let bytes = encode_frame(&push_frame(2, 10));
        let len = bytes.len() - 4;
        assert_eq!(next_frame(&bytes[..3], 1024), Ok(None));
        assert_eq!(next_frame(&bytes[..bytes.len() - 1], 1024), Ok(None));
        assert_eq!(next_frame(&bytes, 1024), Ok(Some(len)));
        assert_eq!(frame_span(len), bytes.len());
        assert_eq!(
            next_frame(&bytes, 8),
            Err(WireError::TooLarge { len, max: 8 })
        );
        assert_eq!(scan_frame(&bytes[4..frame_span(len)]), Ok(Scanned::Push(2)));
    }
}
