//! A connection's outbound side, as the rest of the comet sees it.
//!
//! An [`Outbox`] is a cheap handle (one `Arc`) held by the key index, every
//! room the connection is in, and the connection's own tasks. Frames are
//! pre-encoded `Bytes` (length prefix included), so a room batch is encoded
//! once and the same buffer is queued to every member.
//!
//! Queuing never waits: the queue is bounded, in frames and in bytes, and a
//! full queue means the client cannot keep up, so it is dropped
//! ([`Outbox::push`] aborts it). The byte bound counts each frame whole even
//! when a room's frame is shared by many outboxes: it bounds what one
//! client may hold back, not the process's memory. The
//! writer owns the receiving end ([`Receiver`]); closing is signalled with
//! two flags: `finish` (write what is queued, then close) and `abort`
//! (close now).
//!
//! Whatever is queued here is counted here ([`Counters::queued`]): one frame
//! at a time for replies, in bulk for a fan-out ([`fan_out`]).
//!
//! A new connection's outbox starts *held*: it is in the directory (so no
//! push meant for it is lost while it resumes), but pushes wait aside until
//! the handshake has queued `AuthReply` and the page of the inbox the client
//! missed ([`Outbox::push_first`]); [`Outbox::release`] then queues them in
//! order. So the client sees what it missed before anything live. A pushed
//! frame checks one atomic flag; only while held does it take a lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::counters::Counters;

/// The handle through which frames reach one connection.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(Arc<Inner>);

/// Close flags (`Inner::closing`).
const FINISH: u8 = 1;
const ABORT: u8 = 2;

/// One allocation per connection, none more until a frame is queued: the
/// queue is a `VecDeque` that allocates with its first frame (and shares
/// that allocation with the writer's batch after), and the two wake-ups are `Notify`s kept inline (a
/// tokio channel would allocate a block of 32 slots and padded state up
/// front, 1.5 KiB for every idle connection).
#[derive(Debug)]
struct Inner {
    key: Arc<str>,
    queue: Mutex<Queue>,
    /// Wakes the writer: a frame was queued, or the connection closes.
    writer: Notify,
    /// Wakes whoever waits for the close ([`Outbox::closing`] and co.).
    closed: Notify,
    /// `FINISH` and `ABORT`, once set never cleared.
    closing: AtomicU8,
    slow: AtomicBool,
    /// Pushes wait in `Queue::waiting` while this is set (see the module
    /// docs).
    held: AtomicBool,
    capacity: usize,
    /// Bytes queued or held and not yet written.
    bytes: AtomicUsize,
    max_bytes: usize,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Queue {
    /// What the writer takes next.
    frames: VecDeque<Bytes>,
    /// Pushes held back while the connection resumes.
    waiting: Vec<Bytes>,
    /// The writer took its last frames: nothing more is queued.
    sealed: bool,
}

/// Frames per connection and bytes per connection, at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

/// What the writer is to do next ([`Receiver::wait`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Frames were taken: write them.
    Write,
    /// Finish: everything queued was taken; write it and close.
    Finish,
    /// Close now.
    Abort,
}

/// The writer's end of an outbox.
#[derive(Debug)]
pub(crate) struct Receiver(Outbox);

impl Receiver {
    /// Waits for frames or a close. Moves up to `max` queued frames into
    /// `batch` (empty on entry; all of them once finishing, and then
    /// nothing more is queued). When it takes them all it swaps the two
    /// deques, so one allocation goes back and forth between the queue and
    /// the writer instead of each keeping one.
    pub(crate) async fn wait(&mut self, max: usize, batch: &mut VecDeque<Bytes>) -> Next {
        let inner = &self.0 .0;
        loop {
            // The writer is the only waiter, and a wake-up before this
            // point is kept as a permit, so none is lost.
            let woken = inner.writer.notified();
            let closing = inner.closing.load(Ordering::Acquire);
            if closing & ABORT != 0 {
                return Next::Abort;
            }
            let next = {
                let mut queue = inner.queue.lock();
                let finishing = closing & FINISH != 0;
                if finishing {
                    queue.sealed = true;
                }
                if queue.frames.len() <= max.max(1) || finishing {
                    batch.clear();
                    std::mem::swap(&mut queue.frames, batch);
                } else {
                    batch.extend(queue.frames.drain(..max.max(1)));
                }
                match (finishing, batch.is_empty()) {
                    (true, _) => Some(Next::Finish),
                    (false, false) => Some(Next::Write),
                    (false, true) => None,
                }
            };
            if let Some(next) = next {
                return next;
            }
            woken.await;
        }
    }

    /// The next queued frame, if any (tests).
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Option<Bytes> {
        self.0 .0.queue.lock().frames.pop_front()
    }
}

impl Outbox {
    /// An outbox holding at most `bounds`, and the writer's end. It starts
    /// held: see [`Outbox::release`].
    pub(crate) fn new(key: Arc<str>, bounds: Bounds, counters: Arc<Counters>) -> (Self, Receiver) {
        let inner = Inner {
            key,
            queue: Mutex::new(Queue::default()),
            writer: Notify::new(),
            closed: Notify::new(),
            closing: AtomicU8::new(0),
            slow: AtomicBool::new(false),
            held: AtomicBool::new(true),
            capacity: bounds.frames.max(1),
            bytes: AtomicUsize::new(0),
            max_bytes: bounds.bytes.max(1),
            counters,
        };
        let outbox = Self(Arc::new(inner));
        (outbox.clone(), Receiver(outbox))
    }

    /// Queues a frame ahead of the pushes held back (the handshake's own
    /// replies).
    pub(crate) fn push_first(&self, frame: Bytes) -> bool {
        let queued = self.take_bytes(frame.len()) && self.send(frame);
        if queued {
            self.0.counters.queued(1);
        }
        queued
    }

    /// Stops holding pushes back: those that waited are queued, in order,
    /// and later ones go straight to the queue.
    pub(crate) fn release(&self) {
        let mut queue = self.0.queue.lock();
        let held = std::mem::take(&mut queue.waiting);
        self.0.held.store(false, Ordering::Release);
        // Under the lock, so a push that saw the flag still set and waits
        // for the lock queues after these. (They were counted when held.)
        let mut overflow = false;
        for frame in held {
            if !Self::enqueue(&mut queue, frame, self.0.capacity) {
                overflow = true;
                break;
            }
        }
        drop(queue);
        if overflow {
            self.slow_consumer();
        }
        self.0.writer.notify_one();
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

    /// Queues a last frame, then closes once everything queued is written.
    pub(crate) fn close_with(&self, frame: Bytes) {
        self.push(frame);
        self.finish();
    }

    /// Queues without counting (the caller counts); while held, the frame
    /// waits aside instead (bounded like the queue).
    fn queue(&self, frame: Bytes) -> bool {
        if !self.take_bytes(frame.len()) {
            return false;
        }
        if self.0.held.load(Ordering::Acquire) {
            let mut queue = self.0.queue.lock();
            // Re-checked under the lock: `release` may have just run.
            if self.0.held.load(Ordering::Acquire) {
                if queue.waiting.len() >= self.0.capacity {
                    drop(queue);
                    self.slow_consumer();
                    return false;
                }
                queue.waiting.push(frame);
                return true;
            }
        }
        self.send(frame)
    }

    /// Counts `n` more bytes against the bound; past it the client is
    /// dropped as slow.
    fn take_bytes(&self, n: usize) -> bool {
        let before = self.0.bytes.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > self.0.max_bytes && before > 0 {
            self.0.bytes.fetch_sub(n, Ordering::AcqRel);
            self.slow_consumer();
            return false;
        }
        true
    }

    /// The writer wrote `n` bytes: they no longer count against the bound.
    pub(crate) fn written(&self, n: usize) {
        self.0.bytes.fetch_sub(n, Ordering::AcqRel);
    }

    /// Puts a frame in the writer's queue; a full queue drops the client.
    fn send(&self, frame: Bytes) -> bool {
        let mut queue = self.0.queue.lock();
        if queue.sealed {
            return false;
        }
        let queued = Self::enqueue(&mut queue, frame, self.0.capacity);
        drop(queue);
        if queued {
            self.0.writer.notify_one();
        } else {
            self.slow_consumer();
        }
        queued
    }

    /// Appends to the writer's queue unless it holds `capacity` frames.
    fn enqueue(queue: &mut Queue, frame: Bytes, capacity: usize) -> bool {
        if queue.frames.len() >= capacity {
            return false;
        }
        queue.frames.push_back(frame);
        true
    }

    fn queue_all(&self, frames: &[Bytes]) -> bool {
        frames.iter().all(|f| self.queue(f.clone()))
    }

    /// Closes once everything queued is written.
    pub(crate) fn finish(&self) {
        self.close(FINISH);
    }

    /// Closes now, dropping whatever is queued.
    pub(crate) fn abort(&self) {
        self.close(ABORT);
    }

    fn close(&self, flag: u8) {
        let before = self.0.closing.fetch_or(flag, Ordering::AcqRel);
        if before & flag == 0 {
            self.0.writer.notify_one();
            self.0.closed.notify_waiters();
        }
    }

    /// Whether the connection was dropped for outbound overflow.
    pub(crate) fn is_slow(&self) -> bool {
        self.0.slow.load(Ordering::Acquire)
    }

    /// Resolves once the connection is asked to close, either way.
    pub(crate) async fn closing(&self) {
        self.closed_with(FINISH | ABORT).await
    }

    /// Resolves once the connection is asked to close at once.
    pub(crate) async fn aborted(&self) {
        self.closed_with(ABORT).await
    }

    /// Resolves once any of `flags` is set.
    async fn closed_with(&self, flags: u8) {
        loop {
            let woken = self.0.closed.notified();
            tokio::pin!(woken);
            // Registered before the check, so a close in between wakes it.
            woken.as_mut().enable();
            if self.0.closing.load(Ordering::Acquire) & flags != 0 {
                return;
            }
            woken.await;
        }
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
pub(crate) fn fan_out<O: std::borrow::Borrow<Outbox>>(
    outboxes: impl IntoIterator<Item = O>,
    frames: &[Bytes],
    counters: &Counters,
) -> usize {
    let delivered = outboxes
        .into_iter()
        .filter(|outbox| outbox.borrow().queue_all(frames))
        .count();
    counters.queued(delivered.saturating_mul(frames.len()));
    delivered
}

#[cfg(test)]
pub(crate) fn frames(frames: usize) -> Bounds {
    Bounds {
        frames,
        bytes: usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_bytes_drop_the_client_and_written_bytes_free_room() {
        let counters = Arc::new(Counters::default());
        let bounds = Bounds {
            frames: 100,
            bytes: 10,
        };
        let (outbox, mut rx) = Outbox::new(Arc::from("k"), bounds, counters.clone());
        outbox.release();
        assert!(outbox.push(Bytes::from_static(b"123456")));
        let first = rx.try_recv().unwrap();
        outbox.written(first.len());
        assert!(
            outbox.push(Bytes::from_static(b"123456")),
            "room again once written"
        );
        assert!(!outbox.push(Bytes::from_static(b"12345")), "6 + 5 > 10");
        assert!(outbox.is_slow());
    }

    #[test]
    fn one_frame_larger_than_the_bound_still_goes_to_an_empty_outbox() {
        let counters = Arc::new(Counters::default());
        let bounds = Bounds {
            frames: 4,
            bytes: 4,
        };
        let (outbox, _rx) = Outbox::new(Arc::from("k"), bounds, counters);
        outbox.release();
        assert!(outbox.push(Bytes::from_static(b"123456789")));
        assert!(!outbox.is_slow());
    }

    #[test]
    fn held_pushes_go_out_after_the_first_frames_in_order() {
        let counters = Arc::new(Counters::default());
        let (outbox, mut rx) = Outbox::new(Arc::from("k"), frames(8), counters.clone());
        assert!(outbox.push(Bytes::from_static(b"live-1")));
        assert!(fan_out([&outbox], &[Bytes::from_static(b"live-2")], &counters) == 1);
        assert!(rx.try_recv().is_none(), "held while the handshake runs");
        outbox.push_first(Bytes::from_static(b"reply"));
        outbox.push_first(Bytes::from_static(b"missed"));
        outbox.release();
        outbox.push(Bytes::from_static(b"live-3"));
        let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(got, ["reply", "missed", "live-1", "live-2", "live-3"]);
        assert_eq!(counters.frames_queued(), 5, "each frame counted once");
    }

    #[test]
    fn too_many_held_pushes_drop_the_client() {
        let counters = Arc::new(Counters::default());
        let (outbox, _rx) = Outbox::new(Arc::from("k"), frames(2), counters.clone());
        assert!(outbox.push(Bytes::from_static(b"1")));
        assert!(outbox.push(Bytes::from_static(b"2")));
        assert!(!outbox.push(Bytes::from_static(b"3")));
        assert!(outbox.is_slow());
        assert_eq!(counters.slow_consumers(), 1);
    }
}
