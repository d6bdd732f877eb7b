//! One room member: a raw protocol connection that authenticates, then
//! counts the pushes it reads and answers nothing but its own heartbeats.
//!
//! Cost per connection is what lets one process hold thousands: one task,
//! one socket, one read buffer that is reused (consumed frames are dropped
//! from its front, and `reserve` reclaims the space), a heartbeat timer,
//! and a few atomics in a [`MemberSlot`] that the process reads to know
//! when every member has everything. Push frames are counted with
//! [`wire::scan_frame`]; only a sampled member decodes them in full to
//! read each message's send time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use courier_proto::client::{frame::Body, ErrorCode, Frame};
use courier_proto::FrameCodec;
use parking_lot::Mutex;
use prost::Message as _;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::dial::SourceSpread;
use super::latency::Latency;
use super::wire::{self, Scanned};

/// The id of every member's `Auth` frame.
pub const AUTH_ID: u64 = 1;
/// The id of every member's `Heartbeat` frames.
const HEARTBEAT_ID: u64 = 2;
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// A heartbeat write blocked this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a member is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MemberState {
    /// Not yet authenticated.
    Connecting = 0,
    /// Authenticated and reading.
    Live = 1,
    /// Was live; the server or the network ended it before the bench did.
    Closed = 2,
    /// Never authenticated, retries exhausted.
    Failed = 3,
}

/// What the process knows about one member, updated by its task.
#[derive(Debug, Default)]
pub struct MemberSlot {
    received: AtomicU64,
    /// Unix time (µs) of the last read that delivered messages.
    last_delivery_us: AtomicU64,
    state: AtomicU8,
}

impl MemberSlot {
    /// Messages delivered so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Unix time in µs of the last delivery, 0 before the first.
    pub fn last_delivery_us(&self) -> u64 {
        self.last_delivery_us.load(Ordering::Relaxed)
    }

    /// Where the member is in its life.
    pub fn state(&self) -> MemberState {
        match self.state.load(Ordering::Acquire) {
            1 => MemberState::Live,
            2 => MemberState::Closed,
            3 => MemberState::Failed,
            _ => MemberState::Connecting,
        }
    }

    /// Moves the member to `state`.
    pub fn set_state(&self, state: MemberState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// `n` more messages arrived, at Unix time `now_us`.
    pub fn delivered(&self, n: u64, now_us: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.last_delivery_us.store(now_us, Ordering::Relaxed);
    }
}

/// What a crowd of slots saw, summed once it is stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub received: u64,
    /// Slots still live that got at least the target.
    pub complete: u64,
    /// Unix µs of the last delivery, 0 if none.
    pub last_delivery_us: u64,
}

impl Totals {
    /// The totals of `slots` against `target` messages each.
    pub fn of(slots: &[MemberSlot], target: u64) -> Self {
        let mut totals = Totals::default();
        for slot in slots {
            let received = slot.received();
            totals.received += received;
            if slot.state() == MemberState::Live && received >= target {
                totals.complete += 1;
            }
            totals.last_delivery_us = totals.last_delivery_us.max(slot.last_delivery_us());
        }
        totals
    }
}

/// How long a stopped crowd's tasks may take to end before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Ends a crowd: cancels its give-up and stop tokens, lets its tasks end
/// within [`STOP_GRACE`], and aborts whatever is left.
pub async fn stop_crowd(
    give_up: &CancellationToken,
    stop: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    give_up.cancel();
    stop.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// An authenticated connection, ready to read pushes.
#[derive(Debug)]
pub struct Dialed {
    stream: TcpStream,
    /// Bytes already read past the `AuthReply`.
    buf: BytesMut,
    heartbeat: Duration,
}

impl Dialed {
    /// Sends a heartbeat every `period` instead of at two thirds of the
    /// comet's interval.
    pub fn heartbeat_every(self, period: Duration) -> Self {
        Self {
            heartbeat: period * 3 / 2,
            ..self
        }
    }
}

/// Why a handshake did not end in `AuthReply`.
#[derive(Debug)]
pub enum Refused {
    /// The comet answered with an `Error` frame of this code.
    Error(i32),
    /// Anything else: connect failure, timeout, early close, bad frame.
    Failed(String),
}

/// Connects connection number `index` to `dest` and authenticates with the
/// pre-encoded `auth` frame (id [`AUTH_ID`]), all within `timeout`.
pub async fn handshake(
    spread: &SourceSpread,
    index: u64,
    dest: SocketAddr,
    auth: &[u8],
    timeout: Duration,
    max_frame: usize,
) -> Result<Dialed, Refused> {
    let mut stream = spread
        .connect(index, dest, timeout)
        .await
        .map_err(|e| Refused::Failed(format!("connect: {}", e.kind())))?;
    let reply = tokio::time::timeout(timeout, async {
        stream
            .write_all(auth)
            .await
            .map_err(|e| Refused::Failed(format!("write Auth: {}", e.kind())))?;
        let mut codec = FrameCodec::new(max_frame);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // Bounded by the timeout around it.
        loop {
            while let Some(frame) = codec
                .decode(&mut buf)
                .map_err(|_| Refused::Failed("bad frame before AuthReply".into()))?
            {
                match frame.body {
                    Some(Body::AuthReply(reply)) if frame.id == AUTH_ID => {
                        return Ok((buf, reply.heartbeat_secs));
                    }
                    Some(Body::Error(e)) => return Err(Refused::Error(e.code)),
                    Some(Body::Reconnect(_)) => return Err(Refused::Failed("reconnect".into())),
                    Some(Body::Kick(_)) => return Err(Refused::Failed("kick".into())),
                    _ => {}
                }
            }
            buf.reserve(READ_CHUNK);
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err(Refused::Failed("closed before AuthReply".into())),
                Ok(_) => {}
                Err(e) => return Err(Refused::Failed(format!("read: {}", e.kind()))),
            }
        }
    })
    .await
    .map_err(|_| Refused::Failed("no AuthReply in time".into()))?;
    let (buf, heartbeat_secs) = reply?;
    Ok(Dialed {
        stream,
        buf,
        heartbeat: Duration::from_secs(u64::from(heartbeat_secs.max(1))),
    })
}

/// How a member's reading ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The bench stopped it.
    Stopped,
    /// The server or the network ended it first, for this reason.
    Closed(String),
}

/// Oddities seen while reading, summed by the caller.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// Frames that were neither pushes nor heartbeat replies.
    pub unexpected_frames: u64,
    /// Frames that could not be decoded (the stream stays in step).
    pub bad_frames: u64,
    /// Sampled messages whose `data` had no readable `t`.
    pub unreadable_samples: u64,
}

/// Reads until `stop` or the connection ends: counts pushed messages into
/// `slot`, records their latency into `sample` if given, heartbeats.
pub async fn read_pushes(
    dialed: Dialed,
    slot: &MemberSlot,
    sample: Option<&Mutex<Latency>>,
    stop: &CancellationToken,
    max_frame: usize,
) -> (Ended, ReadStats) {
    let Dialed {
        mut stream,
        mut buf,
        heartbeat,
    } = dialed;
    let mut reader = Reader {
        slot,
        sample,
        max_frame,
        stats: ReadStats::default(),
        last_word: None,
    };
    // Heartbeat well inside the interval, each member at its own phase so
    // thousands of members do not write in the same instant.
    let period = (heartbeat * 2 / 3).max(Duration::from_millis(500));
    let phase = rand::rng().random_range(Duration::ZERO..period);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = wire::heartbeat_frame(HEARTBEAT_ID);

    if let Err(reason) = reader.drain(&mut buf) {
        return (Ended::Closed(reason), reader.stats);
    }
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return (Ended::Stopped, reader.stats),
            _ = ticker.tick() => {
                let write = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&beat)).await;
                let reason = match write {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("heartbeat write: {}", e.kind()),
                    Err(_) => "heartbeat write timed out".to_owned(),
                };
                return (Ended::Closed(reason), reader.stats);
            }
            read = stream.read_buf(&mut buf) => {
                let reason = match read {
                    Ok(0) => reader.last_word.take().unwrap_or_else(|| "closed by the server".into()),
                    Ok(_) => match reader.drain(&mut buf) {
                        Ok(()) => continue,
                        Err(reason) => reason,
                    },
                    Err(e) => format!("read: {}", e.kind()),
                };
                return (Ended::Closed(reason), reader.stats);
            }
        }
    }
}

/// The decoding half of [`read_pushes`].
struct Reader<'a> {
    slot: &'a MemberSlot,
    sample: Option<&'a Mutex<Latency>>,
    max_frame: usize,
    stats: ReadStats,
    /// What the server said before closing (`Error`, `Kick`, `Reconnect`).
    last_word: Option<String>,
}

impl Reader<'_> {
    /// Handles every complete frame in `buf` and drops it from the front.
    /// Each turn consumes at least the 4-byte prefix, so this ends.
    fn drain(&mut self, buf: &mut BytesMut) -> Result<(), String> {
        let now_us = unix_micros();
        let mut delivered = 0u64;
        let result = loop {
            let len = match wire::next_frame(buf, self.max_frame) {
                Ok(Some(len)) => len,
                Ok(None) => break Ok(()),
                // The length cannot be trusted, so neither can anything after it.
                Err(e) => break Err(e.to_string()),
            };
            let body = buf.get(4..wire::frame_span(len)).unwrap_or_default();
            delivered += self.frame(body, now_us);
            buf.advance(wire::frame_span(len));
        };
        if delivered > 0 {
            self.slot.delivered(delivered, now_us);
        }
        result
    }

    /// Handles one frame body; returns the messages it delivered.
    fn frame(&mut self, body: &[u8], now_us: u64) -> u64 {
        if self.sample.is_none() {
            match wire::scan_frame(body) {
                Ok(Scanned::Push(n)) => return n as u64,
                Ok(Scanned::Other) => {}
                Err(_) => {
                    self.stats.bad_frames += 1;
                    return 0;
                }
            }
        }
        let frame = match Frame::decode(body) {
            Ok(frame) => frame,
            Err(_) => {
                self.stats.bad_frames += 1;
                return 0;
            }
        };
        match frame.body {
            Some(Body::Push(push)) => {
                if let Some(sample) = self.sample {
                    let mut latency = sample.lock();
                    for m in &push.messages {
                        match sent_at_us(&m.data) {
                            Some(t) => latency.record_us(now_us.saturating_sub(t)),
                            None => self.stats.unreadable_samples += 1,
                        }
                    }
                }
                push.messages.len() as u64
            }
            // The resume page that follows every `AuthReply` (empty for
            // a bench user) and answers to heartbeats.
            Some(Body::HeartbeatReply(_) | Body::SyncReply(_)) => 0,
            Some(Body::Error(e)) => {
                self.last_word = Some(error_code_name(e.code));
                0
            }
            Some(Body::Kick(k)) => {
                self.last_word = Some(format!("kick: {}", k.reason));
                0
            }
            Some(Body::Reconnect(_)) => {
                self.last_word = Some("reconnect".into());
                0
            }
            _ => {
                self.stats.unexpected_frames += 1;
                0
            }
        }
    }
}

/// The `t` (send time, µs since the Unix epoch) of a bench push's `data`.
pub fn sent_at_us(data: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        t: u64,
    }
    serde_json::from_slice::<Stamp>(data).ok().map(|s| s.t)
}

/// The protobuf name of an `ErrorCode` (`SLOW_CONSUMER`, …), or the number.
pub fn error_code_name(code: i32) -> String {
    ErrorCode::try_from(code)
        .map(|c| c.as_str_name().trim_start_matches("ERROR_CODE_").to_owned())
        .unwrap_or_else(|_| format!("error code {code}"))
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
