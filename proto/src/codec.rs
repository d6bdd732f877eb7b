//! The length-prefixed frame codec for TCP.
//!
//! A frame on the wire is a `u32` big-endian length `N` followed by `N` bytes
//! of an encoded [`Frame`]. The length is checked against `max_frame` as soon
//! as the prefix arrives, so a hostile 2 GiB prefix costs nothing but an
//! error. Nothing is reserved for an announced length either: the read
//! buffer grows only as bytes actually arrive, so a prefix alone pins no
//! memory. After a frame larger than [`SHRINK_ABOVE`] the buffer is let go
//! (the decoded frame keeps what it references), so one large frame does not
//! pin a large buffer for the rest of the connection.
//!
//! A server can lower `max_frame` until a client has authenticated and raise
//! it after ([`FrameCodec::set_max_frame`]). A server holding many mostly
//! idle connections can have the buffer let go whenever it is emptied
//! ([`FrameCodec::release_when_empty`]): an idle connection then holds no
//! read buffer at all, at the price of growing one again (from a few bytes,
//! doubling) for the next frame.
//!
//! "Not enough bytes yet" is the normal outcome of [`Decoder::decode`]
//! (`Ok(None)`), never an error.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use tokio_util::codec::{Decoder, Encoder};

use crate::client::Frame;

/// Default largest accepted frame body: 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

const LEN_PREFIX: usize = 4;

/// A read buffer that grew past this is replaced by a small one once empty.
pub const SHRINK_ABOVE: usize = 16 * 1024;
/// What an emptied large buffer is replaced with.
const SMALL_BUFFER: usize = 512;

/// Why a byte stream could not be turned into frames.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announces more than `max_frame` bytes.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The body is not a valid `Frame`.
    #[error("undecodable frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The underlying transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes length-prefixed [`Frame`]s.
///
/// It also encodes pre-encoded frames (`Bytes` from [`encode_frame`]) as-is,
/// which is how one room batch is encoded once and written to many sockets.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
    release_when_empty: bool,
}

impl FrameCodec {
    /// A codec that refuses frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            release_when_empty: false,
        }
    }

    /// Lets the read buffer go each time a frame empties it (see the module
    /// docs).
    pub fn release_when_empty(mut self) -> Self {
        self.release_when_empty = true;
        self
    }

    /// The largest accepted frame body.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Changes the largest accepted frame body from the next frame on.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            return Err(CodecError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < LEN_PREFIX + len {
            // No reservation: the buffer grows as the bytes arrive.
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        let body = src.split_to(len).freeze();
        if src.is_empty() {
            if self.release_when_empty {
                *src = BytesMut::new();
            } else if src.capacity() > SHRINK_ABOVE {
                *src = BytesMut::with_capacity(SMALL_BUFFER);
            }
        }
        Ok(Some(Frame::decode(body)?))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(&frame, self.max_frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(frame, self.max_frame, dst)
    }
}

/// Pre-encoded frames (length prefix included) pass through untouched.
impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, bytes: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

fn encode_into(frame: &Frame, max: usize, dst: &mut BytesMut) -> Result<(), CodecError> {
    let len = frame.encoded_len();
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    dst.reserve(LEN_PREFIX + len);
    dst.put_u32(len as u32);
    // Cannot fail: capacity was reserved above.
    frame
        .encode(dst)
        .map_err(|e| CodecError::Io(std::io::Error::other(e)))?;
    Ok(())
}

/// Encodes a frame, length prefix included, once, so the same bytes can be
/// written to any number of connections.
pub fn encode_frame(frame: &Frame) -> Bytes {
    let len = frame.encoded_len();
    let mut buf = BytesMut::with_capacity(LEN_PREFIX + len);
    buf.put_u32(len as u32);
    frame.encode_raw(&mut buf);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::client::{frame::Body, Auth, Message, Push, Target};
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let auth = (
            any::<String>(),
            any::<u64>(),
            proptest::collection::vec(".{0,8}", 0..4),
        )
            .prop_map(|(token, last_seq, rooms)| {
                Body::Auth(Auth {
                    token,
                    last_seq,
                    rooms,
                    epoch: last_seq / 2,
                    device: String::new(),
                })
            });
        let push = proptest::collection::vec(
            (
                ".{0,12}",
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..64),
            ),
            0..5,
        )
        .prop_map(|msgs| {
            Body::Push(Push {
                messages: msgs
                    .into_iter()
                    .map(|(id, seq, op, data)| Message {
                        msg_id: id.clone(),
                        seq,
                        from: id,
                        to: Some(Target::room("r")),
                        op,
                        data: data.into(),
                        sent_at_ms: seq as i64,
                        epoch: u64::from(op),
                    })
                    .collect(),
            })
        });
        let hb = Just(Body::Heartbeat(Default::default()));
        (any::<u64>(), prop_oneof![auth, push, hb]).prop_map(|(id, body)| Frame::new(id, body))
    }

    #[test]
    fn a_length_prefix_alone_reserves_nothing() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::with_capacity(8);
        buf.put_u32(60_000);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
    }

    #[test]
    fn a_lowered_limit_refuses_at_the_prefix() {
        let mut codec = FrameCodec::new(8 * 1024);
        let mut buf = BytesMut::new();
        buf.put_u32(65_280);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::TooLarge {
                len: 65_280,
                max: 8192
            })
        ));
        codec.set_max_frame(DEFAULT_MAX_FRAME);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn the_buffer_is_let_go_after_a_large_frame() {
        let mut codec = FrameCodec::default();
        let big = Frame::new(
            1,
            Body::Push(Push {
                messages: vec![Message {
                    data: vec![7u8; 40_000].into(),
                    ..Default::default()
                }],
            }),
        );
        let mut buf = BytesMut::new();
        codec.encode(&big, &mut buf).unwrap();
        assert!(buf.capacity() > SHRINK_ABOVE);
        let decoded = codec.decode(&mut buf).unwrap().expect("a frame");
        assert_eq!(decoded, big);
        assert!(
            buf.capacity() <= SHRINK_ABOVE,
            "capacity {}",
            buf.capacity()
        );
    }

    #[test]
    fn a_releasing_codec_holds_no_buffer_once_emptied() {
        let mut codec = FrameCodec::default().release_when_empty();
        let mut buf = BytesMut::with_capacity(512);
        let frame = Frame::new(1, crate::client::frame::Body::Heartbeat(Default::default()));
        codec.encode(&frame, &mut buf).unwrap();
        codec.encode(&frame, &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame.clone()));
        assert!(buf.capacity() > 0, "kept while bytes remain");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        assert_eq!(buf.capacity(), 0, "let go once empty");
    }

    fn decode_all(codec: &mut FrameCodec, buf: &mut BytesMut) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = codec.decode(buf).expect("valid stream") {
            out.push(f);
        }
        out
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(arb_frame(), 1..6)) {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            for f in &frames {
                codec.encode(f, &mut buf).expect("encode");
            }
            prop_assert_eq!(decode_all(&mut codec, &mut buf), frames);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn split_at_every_boundary(frames in proptest::collection::vec(arb_frame(), 1..4)) {
            let mut wire = BytesMut::new();
            for f in &frames {
                wire.extend_from_slice(&encode_frame(f));
            }
            for cut in 0..=wire.len() {
                let mut codec = FrameCodec::default();
                let mut buf = BytesMut::from(&wire[..cut]);
                let mut got = decode_all(&mut codec, &mut buf);
                buf.extend_from_slice(&wire[cut..]);
                got.extend(decode_all(&mut codec, &mut buf));
                prop_assert_eq!(&got, &frames);
            }
        }
    }

    #[test]
    fn oversize_prefix_is_refused_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0x80u8, 0, 0, 0][..]); // 2 GiB
        let err = codec.decode(&mut buf).expect_err("must refuse");
        assert!(matches!(err, CodecError::TooLarge { len, max: 1024 } if len == 0x8000_0000));
        assert!(buf.capacity() < 1024, "nothing reserved for the body");
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 0xff, 0xff, 0xff][..]);
        assert!(matches!(codec.decode(&mut buf), Err(CodecError::Decode(_))));
    }

    #[test]
    fn encode_frame_matches_the_encoder() {
        let f = Frame::new(7, Body::Heartbeat(Default::default()));
        let mut buf = BytesMut::new();
        FrameCodec::default().encode(&f, &mut buf).expect("encode");
        assert_eq!(&buf[..], &encode_frame(&f)[..]);
    }
}
