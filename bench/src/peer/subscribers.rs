//! The subscribers of one run: raw TCP clients of nats-server or Redis,
//! one task each, that subscribe and then count what they read.
//!
//! Shaped like [`members`](crate::members), for the same reasons: a
//! connection costs one task, one socket and one reused read buffer (bytes
//! handled are dropped from its front and `reserve` reclaims the space);
//! the handshakes in flight are bounded by a semaphore; each subscriber
//! updates a [`MemberSlot`] (the same as a `bench fanout` member's) of atomics once per read, which the run scans every
//! few milliseconds rather than contending on one counter; and two
//! cancellation tokens bound everything (`give_up` ends handshakes when the
//! connect phase runs out of time, `stop` ends every subscriber).
//!
//! A subscriber is connected once the server has confirmed its
//! subscription (NATS: the `PONG` after `SUB`; Redis: the `subscribe`
//! reply), so no publish can miss one that counts as connected. Reading is
//! [`drain`], a pure function over the buffer: it counts messages without
//! allocating, and only a sampled subscriber looks inside a payload, for
//! its send time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{nats, resp, BadBytes, Kind};
use crate::dial::SourceSpread;
use crate::latency::Latency;
use crate::member::{sent_at_us, stop_crowd, unix_micros, MemberSlot, MemberState, Totals};

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// How often the slots are scanned while waiting.
const POLL: Duration = Duration::from_millis(10);
/// One connect + subscribe may take this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Further attempts after a failed handshake.
const RETRIES: u32 = 2;
/// Handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 256;
/// A `PONG` write blocked this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The NATS subject, and the Redis channel, every subscriber listens on.
pub(crate) const SUBJECT: &str = "bench-peer";
/// The `sid` of every NATS subscription.
const SID: u64 = 1;

/// Which subscribers to hold and where.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    pub(crate) server: SocketAddr,
    pub(crate) count: u64,
    /// Connections per loopback source address (0 = no bind).
    pub(crate) per_source: u32,
    /// Every `sample_every`-th subscriber records latency; 0 = none.
    pub(crate) sample_every: u64,
    /// Longest payload accepted.
    pub(crate) max_payload: usize,
}

/// Failed handshakes and early closes, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Tally {
    /// Failed handshake attempts, retries included.
    pub(crate) failed_attempts: BTreeMap<String, u64>,
    /// Subscribers that never subscribed.
    pub(crate) gave_up: u64,
    /// Live subscribers the server or network ended early, by reason.
    pub(crate) closed: BTreeMap<String, u64>,
    /// Sampled payloads without a readable stamp.
    pub(crate) unreadable_samples: u64,
}

/// The end of the connect phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Connected {
    pub(crate) connected: u64,
    /// First handshake started -> last one confirmed.
    pub(crate) secs: f64,
}

/// What the subscribers saw, once stopped.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) received: u64,
    /// Subscribers that got every expected message.
    pub(crate) complete: u64,
    /// Unix µs of the last delivery, 0 if none.
    pub(crate) last_delivery_us: u64,
    pub(crate) latency: Latency,
    pub(crate) tally: Tally,
}

struct Shared {
    plan: Plan,
    subscribe: Vec<u8>,
    spread: SourceSpread,
    handshakes: Semaphore,
    slots: Box<[MemberSlot]>,
    target: AtomicU64,
    handshakes_done: AtomicU64,
    last_connected_us: AtomicU64,
    latency: Mutex<Latency>,
    tally: Mutex<Tally>,
    give_up: CancellationToken,
    stop: CancellationToken,
}

/// The subscribers of one run.
pub(crate) struct Subscribers {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    started_us: u64,
}

impl Subscribers {
    /// Starts connecting every subscriber of `plan`; see
    /// [`Subscribers::connected`].
    pub(crate) fn connect(plan: Plan) -> Self {
        let count = usize::try_from(plan.count).unwrap_or(0);
        let shared = Arc::new(Shared {
            subscribe: match plan.kind {
                Kind::Nats => nats::subscribe(SUBJECT, SID),
                Kind::Redis => resp::subscribe(SUBJECT),
            },
            spread: SourceSpread::new(plan.per_source),
            handshakes: Semaphore::new(CONNECT_CONCURRENCY),
            slots: (0..count).map(|_| MemberSlot::default()).collect(),
            target: AtomicU64::new(u64::MAX),
            handshakes_done: AtomicU64::new(0),
            last_connected_us: AtomicU64::new(0),
            latency: Mutex::new(Latency::new()),
            tally: Mutex::default(),
            give_up: CancellationToken::new(),
            stop: CancellationToken::new(),
            plan,
        });
        let started_us = unix_micros();
        let mut tasks = JoinSet::new();
        for index in 0..count {
            tasks.spawn(run(shared.clone(), index));
        }
        Self {
            shared,
            tasks,
            started_us,
        }
    }

    /// Waits until every subscriber has subscribed or given up, or until
    /// `deadline`, after which handshakes still trying give up.
    pub(crate) async fn connected(&self, deadline: Instant) -> Connected {
        let count = self.shared.slots.len() as u64;
        while self.shared.handshakes_done.load(Ordering::Acquire) < count
            && Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
        self.shared.give_up.cancel();
        let grace = Instant::now() + Duration::from_secs(2);
        while self.shared.handshakes_done.load(Ordering::Acquire) < count && Instant::now() < grace
        {
            tokio::time::sleep(POLL).await;
        }
        let connected = self
            .shared
            .slots
            .iter()
            .filter(|s| matches!(s.state(), MemberState::Live | MemberState::Closed))
            .count() as u64;
        let finished = self.shared.last_connected_us.load(Ordering::Relaxed);
        Connected {
            connected,
            secs: finished.saturating_sub(self.started_us) as f64 / 1e6,
        }
    }

    /// Sets the messages each subscriber should receive.
    pub(crate) fn expect(&self, messages: u64) {
        self.shared.target.store(messages, Ordering::Relaxed);
    }

    /// Whether every subscriber has every expected message or was closed.
    pub(crate) fn settled(&self) -> bool {
        let target = self.shared.target.load(Ordering::Relaxed);
        self.shared.slots.iter().all(|s| match s.state() {
            MemberState::Live => s.received() >= target,
            MemberState::Closed | MemberState::Failed => true,
            MemberState::Connecting => false,
        })
    }

    /// Ends every subscriber and sums up what they saw.
    pub(crate) async fn stop(mut self) -> Outcome {
        let target = self.shared.target.load(Ordering::Relaxed);
        let totals = Totals::of(&self.shared.slots, target);
        let mut outcome = Outcome {
            received: totals.received,
            complete: totals.complete,
            last_delivery_us: totals.last_delivery_us,
            ..Outcome::default()
        };
        stop_crowd(&self.shared.give_up, &self.shared.stop, &mut self.tasks).await;
        outcome.latency = self.shared.latency.lock().clone();
        outcome.tally = self.shared.tally.lock().clone();
        outcome
    }
}

/// One subscriber's whole life: handshake with retries, then reading.
async fn run(shared: Arc<Shared>, index: usize) {
    let Some(slot) = shared.slots.get(index) else {
        return;
    };
    let Some((stream, buf)) = dial(&shared, index as u64, slot).await else {
        slot.set_state(MemberState::Failed);
        shared.tally.lock().gave_up += 1;
        shared.handshakes_done.fetch_add(1, Ordering::AcqRel);
        return;
    };
    slot.set_state(MemberState::Live);
    shared
        .last_connected_us
        .fetch_max(unix_micros(), Ordering::Relaxed);
    shared.handshakes_done.fetch_add(1, Ordering::AcqRel);
    let plan = &shared.plan;
    let sampled = plan.sample_every > 0 && index as u64 % plan.sample_every == 0;
    let sample = sampled.then_some(&shared.latency);
    if let Some(reason) = read(&shared, stream, buf, slot, sample).await {
        slot.set_state(MemberState::Closed);
        *shared.tally.lock().closed.entry(reason).or_default() += 1;
    }
}

/// Handshakes until one succeeds, retries run out, or the connect phase
/// gives up.
async fn dial(shared: &Shared, index: u64, slot: &MemberSlot) -> Option<(TcpStream, BytesMut)> {
    for attempt in 0..=RETRIES {
        let result = tokio::select! {
            _ = shared.give_up.cancelled() => return None,
            result = async {
                let _permit = shared.handshakes.acquire().await.ok()?;
                Some(handshake(shared, index, slot).await)
            } => result?,
        };
        match result {
            Ok(dialed) => return Some(dialed),
            Err(reason) => {
                *shared
                    .tally
                    .lock()
                    .failed_attempts
                    .entry(reason)
                    .or_default() += 1;
            }
        }
        if attempt < RETRIES {
            let backoff = Duration::from_millis(100 << attempt)
                + Duration::from_millis(u64::from(rand::random::<u8>()));
            tokio::select! {
                _ = shared.give_up.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
    None
}

/// Connects, subscribes, and waits for the server to confirm.
async fn handshake(
    shared: &Shared,
    index: u64,
    slot: &MemberSlot,
) -> Result<(TcpStream, BytesMut), String> {
    let plan = &shared.plan;
    let mut stream = shared
        .spread
        .connect(index, plan.server, HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let subscribed = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        stream
            .write_all(&shared.subscribe)
            .await
            .map_err(|e| format!("write subscribe: {}", e.kind()))?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // Bounded by the timeout around it.
        loop {
            buf.reserve(READ_CHUNK);
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed before subscribing".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {}", e.kind())),
            }
            let found = drain(plan.kind, &mut buf, plan.max_payload, None)
                .map_err(|e| format!("bad bytes: {e}"))?;
            if found.messages > 0 {
                slot.delivered(found.messages, unix_micros());
            }
            if let Some(error) = found.error {
                return Err(format!("server error: {error}"));
            }
            if found.pings > 0 {
                stream
                    .write_all(nats::PONG)
                    .await
                    .map_err(|e| format!("write PONG: {}", e.kind()))?;
            }
            if found.ready {
                return Ok(buf);
            }
        }
    })
    .await
    .map_err(|_| "not subscribed in time".to_owned())?;
    Ok((stream, subscribed?))
}

/// Reads until `stop` or the connection ends; returns why it ended early,
/// `None` if the bench stopped it.
async fn read(
    shared: &Shared,
    mut stream: TcpStream,
    mut buf: BytesMut,
    slot: &MemberSlot,
    sample: Option<&Mutex<Latency>>,
) -> Option<String> {
    let plan = &shared.plan;
    let mut last_word: Option<String> = None;
    // Bounded by `stop`, and by the connection's end.
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return None,
            read = stream.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => return Some(last_word.unwrap_or_else(|| "closed by the server".into())),
            Ok(_) => {}
            Err(e) => return Some(format!("read: {}", e.kind())),
        }
        let now_us = unix_micros();
        let found = match sample {
            None => drain(plan.kind, &mut buf, plan.max_payload, None),
            Some(latency) => {
                let mut latency = latency.lock();
                let mut unreadable = 0;
                let mut record = |payload: &[u8]| match sent_at_us(payload) {
                    Some(t) => latency.record_us(now_us.saturating_sub(t)),
                    None => unreadable += 1,
                };
                let found = drain(plan.kind, &mut buf, plan.max_payload, Some(&mut record));
                drop(latency);
                if unreadable > 0 {
                    shared.tally.lock().unreadable_samples += unreadable;
                }
                found
            }
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => return Some(format!("bad bytes: {e}")),
        };
        if found.messages > 0 {
            slot.delivered(found.messages, now_us);
        }
        if let Some(error) = found.error {
            last_word = Some(format!("server error: {error}"));
        }
        if found.pings > 0 {
            match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(nats::PONG)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Some(format!("write PONG: {}", e.kind())),
                Err(_) => return Some("write PONG timed out".into()),
            }
        }
    }
}

/// Longest server error text kept (they key a tally).
const MAX_ERROR_TEXT: usize = 120;

/// A server's error text, shortened to [`MAX_ERROR_TEXT`] characters.
pub(crate) fn error_text(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Where [`drain`] hands each payload, when the subscriber samples latency.
pub(crate) type OnPayload<'a> = &'a mut dyn FnMut(&[u8]);

/// What one pass of [`drain`] over a subscriber's buffer found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Messages delivered.
    pub(crate) messages: u64,
    /// NATS `PING`s, each to be answered with `PONG`.
    pub(crate) pings: u64,
    /// The subscription was confirmed.
    pub(crate) ready: bool,
    /// The server's error text, if it sent one.
    pub(crate) error: Option<String>,
}

/// Handles every complete operation at the front of `buf` and drops it;
/// hands each message's payload to `on_payload` if given. Bytes of an
/// incomplete operation stay for the next read.
pub(crate) fn drain(
    kind: Kind,
    buf: &mut BytesMut,
    max_payload: usize,
    mut on_payload: Option<OnPayload<'_>>,
) -> Result<Found, BadBytes> {
    let mut found = Found::default();
    // Each turn drops at least one byte, so this ends.
    loop {
        let used = match kind {
            Kind::Nats => {
                let Some((op, used)) = nats::next_op(buf, max_payload)? else {
                    break;
                };
                match op {
                    nats::Op::Msg(payload) => {
                        found.messages += 1;
                        if let Some(f) = on_payload.as_mut() {
                            f(payload);
                        }
                    }
                    nats::Op::Ping => found.pings += 1,
                    nats::Op::Pong => found.ready = true,
                    nats::Op::Err(text) => {
                        found.error = Some(error_text(text));
                    }
                    nats::Op::Other => {}
                }
                used
            }
            Kind::Redis => {
                // A bulk string is a payload plus its header.
                let Some((reply, used)) = resp::next_reply(buf, max_payload + 64)? else {
                    break;
                };
                match reply {
                    resp::Reply::Message { payload, .. } => {
                        found.messages += 1;
                        if let Some(f) = on_payload.as_mut() {
                            f(payload);
                        }
                    }
                    resp::Reply::Subscribed => found.ready = true,
                    resp::Reply::Error(text) => {
                        found.error = Some(error_text(text));
                    }
                    resp::Reply::Integer(_) | resp::Reply::Other => {}
                }
                used
            }
        };
        buf.advance(used);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Feeds `stream` in two parts split at `cut` through [`drain`], as a
    /// subscriber's reads would, and sums what it found.
    fn drain_split(kind: Kind, stream: &[u8], cut: usize) -> (Found, Vec<Vec<u8>>) {
        let mut buf = BytesMut::new();
        let mut total = Found::default();
        let mut payloads = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(part);
            let mut keep = |p: &[u8]| payloads.push(p.to_vec());
            let found = drain(kind, &mut buf, MAX, Some(&mut keep)).expect("valid stream");
            total.messages += found.messages;
            total.pings += found.pings;
            total.ready |= found.ready;
            total.error = total.error.or(found.error);
        }
        assert!(buf.is_empty());
        (total, payloads)
    }

    #[test]
    fn nats_messages_and_pings_are_counted_at_every_split() {
        let mut s = b"INFO {\"max_payload\":1048576}\r\nPONG\r\n".to_vec();
        for i in 0..3 {
            let p = format!("{{\"t\":{i},\"p\":\"xx\"}}");
            s.extend_from_slice(format!("MSG bench-peer 1 {}\r\n{p}\r\n", p.len()).as_bytes());
        }
        s.extend_from_slice(b"PING\r\nMSG bench-peer 1 0\r\n\r\nPING\r\n");
        for cut in 0..=s.len() {
            let (found, payloads) = drain_split(Kind::Nats, &s, cut);
            assert_eq!(found.messages, 4, "cut at {cut}");
            assert_eq!(found.pings, 2, "cut at {cut}");
            assert!(found.ready);
            assert_eq!(found.error, None);
            assert_eq!(sent_at_us(&payloads[2]), Some(2));
            assert!(payloads[3].is_empty());
        }
    }

    #[test]
    fn redis_pushes_are_counted_at_every_split() {
        let mut s = b"*3\r\n$9\r\nsubscribe\r\n$10\r\nbench-peer\r\n:1\r\n".to_vec();
        for i in 0..3u64 {
            let p = format!("{{\"t\":{i},\"p\":\"\"}}");
            resp::command(&mut s, &[b"message", SUBJECT.as_bytes(), p.as_bytes()]);
        }
        for cut in 0..=s.len() {
            let (found, payloads) = drain_split(Kind::Redis, &s, cut);
            assert_eq!(found.messages, 3, "cut at {cut}");
            assert_eq!(found.pings, 0);
            assert!(found.ready);
            assert_eq!(sent_at_us(&payloads[1]), Some(1));
        }
    }

    #[test]
    fn server_errors_are_reported() {
        let mut buf = BytesMut::from(&b"-ERR 'Slow Consumer'\r\n"[..]);
        let found = drain(Kind::Nats, &mut buf, MAX, None).expect("parses");
        assert_eq!(found.error.as_deref(), Some("'Slow Consumer'"));
        let mut buf = BytesMut::from(&b"-ERR max clients\r\n"[..]);
        let found = drain(Kind::Redis, &mut buf, MAX, None).expect("parses");
        assert_eq!(found.error.as_deref(), Some("ERR max clients"));
        let mut buf = BytesMut::from(&b"BOGUS\r\n"[..]);
        assert!(drain(Kind::Nats, &mut buf, MAX, None).is_err());
    }
}
