//! A bare framed TCP connection to a comet, for tests and tools that must
//! speak the protocol directly: forged tokens, frames out of order, garbage
//! bytes. No heartbeat, no reconnect, no request matching.

use std::time::Duration;

use courier_proto::client::Frame;
use courier_proto::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

use crate::config::CLIENT_MAX_FRAME;
use crate::ClientError;

/// One framed TCP connection.
#[derive(Debug)]
pub struct RawConnection {
    framed: Framed<TcpStream, FrameCodec>,
}

impl RawConnection {
    /// Connects to a comet's TCP listener, accepting frames up to 1 MiB.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        Self::connect_with_max_frame(addr, CLIENT_MAX_FRAME).await
    }

    /// Connects, accepting frames up to `max_frame` bytes.
    pub async fn connect_with_max_frame(
        addr: impl ToSocketAddrs,
        max_frame: usize,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            framed: Framed::new(stream, FrameCodec::new(max_frame)),
        })
    }

    /// Writes one frame and flushes.
    pub async fn send(&mut self, frame: Frame) -> Result<(), ClientError> {
        self.framed.send(frame).await?;
        Ok(())
    }

    /// Writes raw bytes (no length prefix added) and flushes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        // Anything the codec buffered goes out first, keeping the byte order.
        SinkExt::<Frame>::flush(&mut self.framed).await?;
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await?;
        Ok(())
    }

    /// The next frame; `None` once the connection is closed or the bytes are
    /// not valid frames.
    pub async fn recv(&mut self) -> Option<Frame> {
        match self.framed.next().await {
            Some(Ok(frame)) => Some(frame),
            Some(Err(_)) | None => None,
        }
    }

    /// The next frame, the decoding error, or `None` at end of stream.
    pub async fn try_recv(&mut self) -> Option<Result<Frame, ClientError>> {
        self.framed
            .next()
            .await
            .map(|r| r.map_err(ClientError::from))
    }

    /// Like [`RawConnection::recv`], giving up after `timeout` with
    /// [`ClientError::Timeout`].
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, ClientError> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| ClientError::Timeout)
    }

    /// Shuts down the write half (the server sees end of stream).
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        SinkExt::<Frame>::flush(&mut self.framed).await?;
        self.framed.get_mut().shutdown().await?;
        Ok(())
    }

    /// The underlying framed stream.
    pub fn into_framed(self) -> Framed<TcpStream, FrameCodec> {
        self.framed
    }
}
