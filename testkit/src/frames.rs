//! The one frame-level peer tests use to speak the client protocol
//! directly: forged tokens, frames out of order, garbage bytes, a fake comet
//! for the SDK. No heartbeat, no reconnect, no request matching: exactly
//! the frames a test writes, and the frames it reads.
//!
//! Generic over the byte stream, so it runs over TCP or an in-memory duplex.
//! The helpers that read panic with what they expected: a test that waits
//! for a frame fails after [`PATIENCE`] rather than hanging.

use std::time::Duration;

use bytes::Bytes;
use courier_proto::client::{frame::Body, Auth, AuthReply, ErrorCode, Frame};
use courier_proto::{CodecError, FrameCodec};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

use crate::wait::PATIENCE;

/// Largest frame a test peer accepts: larger than the comet's default, since
/// a comet may push big batches.
const MAX_FRAME: usize = 1 << 20;

/// One framed connection.
#[derive(Debug)]
pub struct FrameClient<S = TcpStream> {
    framed: Framed<S, FrameCodec>,
}

impl FrameClient<TcpStream> {
    /// Connects over TCP (Nagle off); panics if the connection fails.
    pub async fn connect(addr: impl ToSocketAddrs) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect over TCP");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self::new(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameClient<S> {
    /// Frames over `stream`.
    pub fn new(stream: S) -> Self {
        Self {
            framed: Framed::new(stream, FrameCodec::new(MAX_FRAME)),
        }
    }

    /// Writes one frame with `id` and `body`, and flushes.
    pub async fn send(&mut self, id: u64, body: Body) {
        self.send_frame(Frame::new(id, body)).await
    }

    /// Writes one frame and flushes.
    pub async fn send_frame(&mut self, frame: Frame) {
        self.framed.send(frame).await.expect("write a frame");
    }

    /// Writes pre-encoded frames (length prefix included) and flushes.
    pub async fn send_encoded(&mut self, frame: Bytes) {
        self.framed.send(frame).await.expect("write a frame");
    }

    /// Writes raw bytes (no length prefix added) and flushes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // Anything the codec buffered goes out first, keeping the byte order.
        SinkExt::<Frame>::flush(&mut self.framed)
            .await
            .expect("flush");
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.expect("write bytes");
        stream.flush().await.expect("flush");
    }

    /// The next frame; panics at end of stream, on bytes that are not a
    /// frame, or after [`PATIENCE`].
    pub async fn recv(&mut self) -> Frame {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Ok(Some(Ok(frame))) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame, or `None` once the stream ended (or carried bytes
    /// that are not a frame); panics if neither happens `within`.
    pub async fn next_frame(&mut self, within: Duration) -> Option<Frame> {
        tokio::time::timeout(within, self.framed.next())
            .await
            .expect("a frame or the end of the stream in time")
            .and_then(Result::ok)
    }

    /// The next frame or decoding error, `None` at end of stream; waits as
    /// long as it takes (bound it yourself).
    pub async fn try_next(&mut self) -> Option<Result<Frame, CodecError>> {
        self.framed.next().await
    }

    /// The next frame, which must be an `Error` with `code`.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Frame {
        let frame = self.recv().await;
        match &frame.body {
            Some(Body::Error(e)) if e.code == code as i32 => frame,
            _ => panic!("expected error {code:?}, got {frame:?}"),
        }
    }

    /// The connection must end (EOF or reset) with no further frame.
    pub async fn expect_closed(&mut self) {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Ok(None) | Ok(Some(Err(_))) => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }

    /// Reads until the peer closes the stream; returns the codes of the
    /// `Error` frames seen. Panics if a frame or the end takes longer than
    /// `within`.
    pub async fn errors_until_closed(&mut self, within: Duration) -> Vec<i32> {
        let mut codes = Vec::new();
        while let Some(frame) = self.next_frame(within).await {
            if let Some(Body::Error(e)) = frame.body {
                codes.push(e.code);
            }
        }
        codes
    }

    /// Sends `Auth` (frame id 1) with `token` and `rooms` and returns the
    /// `AuthReply`, reading past the inbox page a comet sends right after
    /// it; panics on anything else.
    pub async fn auth(&mut self, token: &str, rooms: &[&str]) -> AuthReply {
        self.send(
            1,
            Body::Auth(Auth {
                token: token.into(),
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                ..Auth::default()
            }),
        )
        .await;
        let frame = self.recv().await;
        assert_eq!(frame.id, 1, "AuthReply echoes the Auth frame id");
        let reply = match frame.body {
            Some(Body::AuthReply(reply)) => reply,
            other => panic!("expected AuthReply, got {other:?}"),
        };
        let page = self.recv().await;
        match page.body {
            Some(Body::SyncReply(p)) if page.id == 0 && p.room.is_empty() => reply,
            other => panic!("expected the inbox page after AuthReply, got {other:?}"),
        }
    }

    /// Shuts down the write half (the peer sees end of stream).
    pub async fn shutdown(&mut self) {
        SinkExt::<Frame>::flush(&mut self.framed)
            .await
            .expect("flush");
        let _ = self.framed.get_mut().shutdown().await;
    }

    /// The framed stream, for what the helpers do not cover.
    pub fn framed_mut(&mut self) -> &mut Framed<S, FrameCodec> {
        &mut self.framed
    }
}
