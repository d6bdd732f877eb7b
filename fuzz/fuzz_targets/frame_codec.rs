//! The TCP frame decoder over arbitrary bytes, split into arbitrary chunks.
//!
//! Input: byte 0 picks `max_frame` (even: the default; odd: 0-63 bytes from
//! bits 1-6, raised to the default after the first frame if bit 7 is set,
//! as a server does after `Auth`), byte 1 seeds the chunk sizes (0: all in
//! one chunk), the rest is the byte stream. Like `FramedRead`, bytes are
//! appended and `decode` is called until it wants more, and the stream
//! stops at the first error.
//!
//! Checked: no panic; the read buffer never grows beyond what the bytes
//! given need (nothing is reserved for an announced length); every decoded
//! frame had a body within `max_frame` and survives encode + decode as is.
#![no_main]

use bytes::BytesMut;
use courier_proto::{FrameCodec, DEFAULT_MAX_FRAME};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let [pick, seed, stream @ ..] = data else {
        return;
    };
    let small = pick % 2 == 1;
    let raise = small && pick & 0x80 != 0;
    let mut codec = FrameCodec::new(if small {
        usize::from((pick >> 1) & 0x3f)
    } else {
        DEFAULT_MAX_FRAME
    });
    let mut buf = BytesMut::new();
    let mut chunks = Chunks::new(*seed, stream);
    let mut given = 0usize;
    while let Some(chunk) = chunks.next() {
        buf.extend_from_slice(chunk);
        given += chunk.len();
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let body = before - buf.len() - 4;
                    let max = codec.max_frame();
                    assert!(body <= max, "{body}-byte body over {max}");
                    round_trip(&frame);
                    if raise {
                        codec.set_max_frame(DEFAULT_MAX_FRAME);
                    }
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => {
                    check_capacity(&buf, given);
                    return;
                }
            }
            check_capacity(&buf, given);
        }
        check_capacity(&buf, given);
    }
    // At end of stream: leftover bytes are an error, never a panic.
    let _ = codec.decode_eof(&mut buf);
});

/// `BytesMut` at most doubles what it was asked to hold; the codec may also
/// swap in a 512-byte buffer. Anything more was reserved ahead of the bytes.
fn check_capacity(buf: &BytesMut, given: usize) {
    let limit = 2 * given + 1024;
    assert!(
        buf.capacity() <= limit,
        "buffer capacity {} after {given} bytes given",
        buf.capacity()
    );
}

/// A decoded frame encodes, and that decodes to the same frame.
fn round_trip(frame: &courier_proto::client::Frame) {
    let mut codec = FrameCodec::new(usize::MAX);
    let mut wire = BytesMut::new();
    codec
        .encode(frame, &mut wire)
        .expect("encode a decoded frame");
    let again = codec
        .decode(&mut wire)
        .expect("decode a re-encoded frame")
        .expect("a whole frame");
    assert_eq!(&again, frame);
    assert!(wire.is_empty());
}

/// Splits `rest` into chunks of 1..=64 bytes from a xorshift seeded by
/// `seed`, or one chunk when `seed` is 0.
struct Chunks<'a> {
    state: u32,
    rest: &'a [u8],
}

impl<'a> Chunks<'a> {
    fn new(seed: u8, rest: &'a [u8]) -> Self {
        Self {
            state: u32::from(seed),
            rest,
        }
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = if self.state == 0 {
            self.rest.len()
        } else {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            1 + (self.state % 64) as usize
        };
        let (chunk, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}
