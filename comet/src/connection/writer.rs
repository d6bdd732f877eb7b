//! A connection's writer: drains its outbox and writes frames to the socket.
//!
//! Everything already queued is taken at once (`try_recv`) and written as
//! one vectored write of the shared `Bytes` (no copy), then flushed once.
//! Every write is bounded by `write_timeout`; a client that does not read
//! stalls only its own writer, and is dropped when its queue overflows or
//! the timeout passes. Between batches nothing but the (shrunk) batch
//! vector is held, so an idle connection holds no large buffer.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf, Bytes};
use courier_proto::client::{frame::Body, Frame, Kick};
use courier_proto::encode_frame;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::outbox::{Next, Outbox, Receiver};

/// How long a dropped slow consumer gets to take its `Kick` frame.
const KICK_GRACE: Duration = Duration::from_millis(50);
/// Frames kept allocated between writes: a few, so a steady trickle
/// allocates nothing. The batch and the outbox's queue hand this one
/// allocation back and forth (see `Receiver::wait`).
const IDLE_BATCH_CAPACITY: usize = 4;

/// Frames taken from the queue, written as one `Buf`.
#[derive(Debug, Default)]
struct Batch {
    frames: VecDeque<Bytes>,
    remaining: usize,
    /// Bytes taken from the outbox for this batch (`remaining` shrinks as
    /// they are written; this does not).
    taken: usize,
}

impl Batch {
    /// Counts the frames the outbox just put in `frames`, dropping empty
    /// ones (a `Buf` must not show an empty chunk while bytes remain).
    fn taken(&mut self) {
        self.frames.retain(|f| !f.is_empty());
        self.taken = self.frames.iter().map(Bytes::len).sum();
        self.remaining = self.taken;
    }

    #[cfg(test)]
    fn push(&mut self, frame: Bytes) {
        self.frames.push_back(frame);
        self.taken();
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.frames.shrink_to(IDLE_BATCH_CAPACITY);
        self.remaining = 0;
        self.taken = 0;
    }
}

impl Buf for Batch {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.frames.front().map(|b| &b[..]).unwrap_or_default()
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if cnt < front.len() {
                front.advance(cnt);
                self.remaining -= cnt;
                return;
            }
            cnt -= front.len();
            self.remaining -= front.len();
            self.frames.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, frame) in dst.iter_mut().zip(self.frames.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        n
    }
}

/// How a batch write ended.
enum Written {
    Done,
    /// Aborted mid-batch: the stream may hold half a frame.
    Aborted,
    Failed,
}

async fn write_batch<W: AsyncWrite + Unpin>(
    io: &mut W,
    batch: &mut Batch,
    outbox: &Outbox,
    write_timeout: Duration,
) -> Written {
    let write = async {
        io.write_all_buf(batch).await?;
        io.flush().await
    };
    tokio::select! {
        biased;
        _ = outbox.aborted() => Written::Aborted,
        r = tokio::time::timeout(write_timeout, write) => match r {
            Ok(Ok(())) => Written::Done,
            Ok(Err(e)) => {
                tracing::debug!(key = %outbox.key(), error = %e, "write failed");
                Written::Failed
            }
            Err(_) => {
                tracing::info!(key = %outbox.key(), "write timed out; dropping connection");
                Written::Failed
            }
        },
    }
}

/// Writes the outbox's frames to `io` until the connection closes.
pub(crate) async fn run<W: AsyncWrite + Unpin>(
    mut io: W,
    mut queue: Receiver,
    outbox: Outbox,
    write_timeout: Duration,
    max_batch: usize,
) {
    let mut batch = Batch::default();
    let graceful = loop {
        let next = queue.wait(max_batch, &mut batch.frames).await;
        batch.taken();
        match next {
            Next::Write => {}
            // Everything queued before `finish` (the last Error, Kick or
            // Reconnect frame) was taken; later pushes find it sealed.
            Next::Finish => break true,
            Next::Abort => break false,
        }
        match write_batch(&mut io, &mut batch, &outbox, write_timeout).await {
            Written::Done => {
                outbox.written(batch.taken);
                batch.clear();
            }
            Written::Aborted => return,
            Written::Failed => {
                outbox.abort();
                return;
            }
        }
    };
    if graceful {
        if !matches!(
            write_batch(&mut io, &mut batch, &outbox, write_timeout).await,
            Written::Done
        ) {
            return;
        }
    } else if outbox.is_slow() {
        // Only between batches is the stream at a frame boundary.
        let kick = encode_frame(&Frame::new(
            0,
            Body::Kick(Kick {
                reason: "slow consumer".into(),
            }),
        ));
        let _ = tokio::time::timeout(KICK_GRACE, async {
            io.write_all(&kick).await?;
            io.flush().await
        })
        .await;
    }
    let _ = tokio::time::timeout(write_timeout, io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_advances_across_frames() {
        let mut b = Batch::default();
        b.push(Bytes::from_static(b"abc"));
        b.push(Bytes::from_static(b"de"));
        assert_eq!(b.remaining(), 5);
        b.advance(4);
        assert_eq!(b.chunk(), b"e");
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(b.chunks_vectored(&mut slices), 1);
        b.advance(1);
        assert_eq!(b.remaining(), 0);
        assert!(b.chunk().is_empty());
    }
}
