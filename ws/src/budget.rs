//! A byte budget on what is read from a stream, so a peer that has not
//! authenticated yet cannot make the WebSocket layer buffer a whole
//! `max_frame` message.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose reads stop at a byte budget while one is set: a read
/// past it fails with `InvalidData`. Writes pass through.
#[derive(Debug)]
pub struct ReadBudget<S> {
    inner: S,
    /// Bytes that may still be read; `None`: no bound.
    left: Option<usize>,
}

impl<S> ReadBudget<S> {
    /// `inner`, unbounded until [`ReadBudget::limit`].
    pub fn new(inner: S) -> Self {
        Self { inner, left: None }
    }

    /// From now on at most `bytes` more are read, until [`ReadBudget::lift`].
    pub fn limit(&mut self, bytes: usize) {
        self.left = Some(bytes);
    }

    /// Reads are no longer bounded.
    pub fn lift(&mut self) {
        self.left = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBudget<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(left) = this.left else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than allowed before the first message",
            )));
        }
        // Read into at most `left` bytes of `buf` (only before the first
        // message: zeroing the few KiB first costs nothing that matters).
        let room = left.min(buf.remaining());
        let mut bounded = ReadBuf::new(buf.initialize_unfilled_to(room));
        let poll = Pin::new(&mut this.inner).poll_read(cx, &mut bounded);
        let n = bounded.filled().len();
        if let Poll::Ready(Ok(())) = poll {
            buf.advance(n);
            this.left = Some(left - n);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBudget<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn reads_stop_at_the_budget_until_it_is_lifted() {
        let data: &[u8] = &[7; 100];
        let mut r = ReadBudget::new(data);
        let mut buf = [0u8; 30];
        assert_eq!(r.read(&mut buf).await.unwrap(), 30, "unbounded at first");
        r.limit(50);
        let mut buf = [0u8; 64];
        assert_eq!(
            r.read(&mut buf).await.unwrap(),
            50,
            "no further than the budget"
        );
        let err = r.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        r.lift();
        assert_eq!(r.read(&mut buf).await.unwrap(), 20, "the rest, once lifted");
    }
}
