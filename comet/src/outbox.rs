//! A connection's outbound side, as the rest of the comet sees it.
//!
//! An [`Outbox`] is a cheap handle (one `Arc`) held by the key index, every
//! room the connection is in, and the connection's own tasks. Frames are
//! pre-encoded `Bytes` (length prefix included), so a room batch is encoded
//! once and the same buffer is queued to every member.
//!
//! Queuing never waits: the queue is bounded and a full queue means the
//! client cannot keep up, so it is dropped ([`Outbox::push`] aborts it). The
//! writer owns the receiving end; closing is signalled with two tokens:
//! `finish` (write what is queued, then close) and `abort` (close now).
//!
//! Whatever is queued here is counted here ([`Counters::queued`]): one frame
//! at a time for replies, in bulk for a fan-out ([`fan_out`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;

/// The handle through which frames reach one connection.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    key: Arc<str>,
    tx: mpsc::Sender<Bytes>,
    finish: CancellationToken,
    abort: CancellationToken,
    slow: AtomicBool,
    counters: Arc<Counters>,
}

impl Outbox {
    /// An outbox holding at most `capacity` frames, and the writer's end.
    pub(crate) fn new(
        key: Arc<str>,
        capacity: usize,
        counters: Arc<Counters>,
    ) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let inner = Inner {
            key,
            tx,
            finish: CancellationToken::new(),
            abort: CancellationToken::new(),
            slow: AtomicBool::new(false),
            counters,
        };
        (Self(Arc::new(inner)), rx)
    }

    /// The connection's key.
    pub(crate) fn key(&self) -> &Arc<str> {
        &self.0.key
    }

    /// Queues one pre-encoded frame. Returns whether it was queued; a full
    /// queue drops the connection as a slow consumer.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        let queued = self.queue(frame);
        if queued {
            self.0.counters.queued(1);
        }
        queued
    }

    /// Queues every frame, in order; true if all were queued.
    pub(crate) fn push_all(&self, frames: &[Bytes]) -> bool {
        let queued = self.queue_all(frames);
        if queued {
            self.0.counters.queued(frames.len());
        }
        queued
    }

    /// Queues a last frame, then closes once everything queued is written.
    pub(crate) fn close_with(&self, frame: Bytes) {
        self.push(frame);
        self.finish();
    }

    /// Queues without counting (the caller counts).
    fn queue(&self, frame: Bytes) -> bool {
        match self.0.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.slow_consumer();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    fn queue_all(&self, frames: &[Bytes]) -> bool {
        frames.iter().all(|f| self.queue(f.clone()))
    }

    /// Closes once everything queued is written.
    pub(crate) fn finish(&self) {
        self.0.finish.cancel();
    }

    /// Closes now, dropping whatever is queued.
    pub(crate) fn abort(&self) {
        self.0.abort.cancel();
    }

    /// Whether the connection was dropped for outbound overflow.
    pub(crate) fn is_slow(&self) -> bool {
        self.0.slow.load(Ordering::Acquire)
    }

    /// Resolves once the connection is asked to close, either way.
    pub(crate) async fn closing(&self) {
        tokio::select! {
            _ = self.0.finish.cancelled() => {}
            _ = self.0.abort.cancelled() => {}
        }
    }

    /// Resolves once the connection is asked to finish gracefully.
    pub(crate) async fn finishing(&self) {
        self.0.finish.cancelled().await
    }

    /// Resolves once the connection is asked to close at once.
    pub(crate) async fn aborted(&self) {
        self.0.abort.cancelled().await
    }

    fn slow_consumer(&self) {
        if !self.0.slow.swap(true, Ordering::AcqRel) {
            self.0.counters.slow_consumer();
            tracing::info!(key = %self.0.key, "dropping slow consumer: outbound queue full");
            self.abort();
        }
    }
}

/// Queues `frames` to each of `outboxes`, in order; returns how many took
/// them all. The frames are counted once for the whole fan-out.
pub(crate) fn fan_out<O: std::ops::Deref<Target = Outbox>>(
    outboxes: impl IntoIterator<Item = O>,
    frames: &[Bytes],
    counters: &Counters,
) -> usize {
    let delivered = outboxes
        .into_iter()
        .filter(|outbox| outbox.queue_all(frames))
        .count();
    counters.queued(delivered.saturating_mul(frames.len()));
    delivered
}
