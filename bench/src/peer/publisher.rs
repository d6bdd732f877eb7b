//! The publishing side of `bench peer`: one connection, publishes sent
//! open loop at a fixed rate, each payload stamped with its send time.
//!
//! Open loop, like the fan-out bench's [`pusher`](crate::fanout):
//! send times follow the rate, not the server's answers, so a slow server
//! shows as latency rather than as a politely lowered load. NATS does not
//! answer a `PUB` (with `verbose` off), so after the last one the
//! publisher sends `PING`: its `PONG` means the server handled every
//! `PUB`. Redis answers each `PUBLISH` with the number of subscribers it
//! reached; at most [`REDIS_IN_FLIGHT`] may be unanswered, which is the
//! only thing that can hold sends back (the report's send rate then falls
//! below the offered one). With no rate, publishes go out in batches.
//!
//! The payload is the fan-out bench's `data`: `{"t":<unix µs>,"p":"xxx…"}`,
//! padded with `x` to `--payload` bytes (or its fixed part, ~30 bytes, if
//! that is longer); subscribers read `t` back with
//! [`sent_at_us`](crate::member::sent_at_us).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval};

use super::subscribers::{error_text, SUBJECT};
use super::{nats, resp, Kind};
use crate::member::unix_micros;

/// Most `PUBLISH`es awaiting Redis's answer.
pub(crate) const REDIS_IN_FLIGHT: u64 = 64;
/// Most publishes written at once when there is no rate.
const BATCH: u64 = 64;
/// Connecting may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write blocked this long ends publishing.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4096;

/// What to publish and how fast.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    pub(crate) server: SocketAddr,
    pub(crate) publishes: u64,
    /// Publishes per second; 0 = as fast as possible.
    pub(crate) rate: u64,
    /// Bytes of each payload (at least its fixed part).
    pub(crate) payload: usize,
    /// Nothing is sent, or waited for, after this.
    pub(crate) deadline: Instant,
}

/// What happened to the publishes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    /// Publishes the server took: NATS, written before the final `PONG`;
    /// Redis, answered with a subscriber count.
    pub(crate) published: u64,
    /// Redis: subscribers reached, summed over `PUBLISH` answers.
    pub(crate) receivers: Option<u64>,
    /// What went wrong, by kind, with counts.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Unix µs stamped into the first and the last publish.
    pub(crate) first_us: u64,
    pub(crate) last_us: u64,
    /// Publishes written.
    pub(crate) written: u64,
    /// The deadline came before every publish was sent and taken.
    pub(crate) hit_deadline: bool,
}

impl Sent {
    /// Publishes sent per second, first to last.
    pub(crate) fn send_rate(&self) -> f64 {
        let secs = self.last_us.saturating_sub(self.first_us) as f64 / 1e6;
        if self.written < 2 || secs <= 0.0 {
            return 0.0;
        }
        (self.written - 1) as f64 / secs
    }

    fn error(&mut self, what: impl Into<String>, n: u64) {
        if n > 0 {
            *self.errors.entry(what.into()).or_default() += n;
        }
    }
}

/// Publishes `plan.publishes` payloads (fewer if the deadline comes first)
/// and waits for the server to have them.
pub(crate) async fn publish(plan: Plan) -> anyhow::Result<Sent> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(plan.server))
        .await
        .context("connecting the publisher: timed out")?
        .context("connecting the publisher")?;
    stream.set_nodelay(true)?;
    if plan.kind == Kind::Nats {
        stream.write_all(nats::connect()).await?;
    }
    let mut ticker: Option<Interval> = (plan.rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut sent = Sent {
        receivers: (plan.kind == Kind::Redis).then_some(0),
        ..Sent::default()
    };
    let max_reply = plan.payload + 1024;
    let (mut out, mut payload) = (Vec::new(), Vec::new());
    let mut read_buf = BytesMut::with_capacity(READ_CHUNK);
    let mut unanswered = 0u64;
    let (mut pinged, mut ponged) = (false, false);
    // Bounded by `plan.deadline`.
    loop {
        let all_written = sent.written >= plan.publishes;
        if all_written {
            match plan.kind {
                Kind::Nats if !pinged => {
                    write(&mut stream, nats::PING).await?;
                    pinged = true;
                }
                Kind::Nats if ponged => break,
                Kind::Redis if unanswered == 0 => break,
                _ => {}
            }
        }
        let may_send = !all_written && (plan.kind == Kind::Nats || unanswered < REDIS_IN_FLIGHT);
        if read_buf.capacity() - read_buf.len() < READ_CHUNK / 4 {
            read_buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(plan.deadline) => {
                match plan.kind {
                    Kind::Nats if pinged => sent.error("no PONG after the last PUB by the deadline", 1),
                    Kind::Nats => {}
                    Kind::Redis => sent.error("no answer by the deadline", unanswered),
                }
                sent.error("not sent by the deadline", plan.publishes - sent.written);
                sent.hit_deadline = true;
                break;
            }
            read = stream.read_buf(&mut read_buf) => {
                match read {
                    Ok(0) => {
                        sent.error("connection closed by the server", 1);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        sent.error(format!("read: {}", e.kind()), 1);
                        break;
                    }
                }
                let mut pongs_owed = 0;
                // Each turn drops at least one byte, so this ends.
                loop {
                    let used = match plan.kind {
                        Kind::Nats => {
                            let Some((op, used)) = nats::next_op(&read_buf, max_reply)? else {
                                break;
                            };
                            match op {
                                nats::Op::Ping => pongs_owed += 1,
                                nats::Op::Pong => ponged = pinged,
                                nats::Op::Err(text) => {
                                    sent.error(error_text(text), 1);
                                }
                                nats::Op::Msg(_) | nats::Op::Other => {}
                            }
                            used
                        }
                        Kind::Redis => {
                            let Some((reply, used)) = resp::next_reply(&read_buf, max_reply)? else {
                                break;
                            };
                            match reply {
                                resp::Reply::Integer(n) => {
                                    unanswered = unanswered.saturating_sub(1);
                                    sent.published += 1;
                                    if let Some(r) = sent.receivers.as_mut() {
                                        *r += u64::try_from(n).unwrap_or(0);
                                    }
                                }
                                resp::Reply::Error(text) => {
                                    unanswered = unanswered.saturating_sub(1);
                                    sent.error(error_text(text), 1);
                                }
                                _ => {}
                            }
                            used
                        }
                    };
                    read_buf.advance(used);
                }
                for _ in 0..pongs_owed {
                    write(&mut stream, nats::PONG).await?;
                }
            }
            _ = tick(&mut ticker), if may_send => {
                let room = match plan.kind {
                    Kind::Nats => BATCH,
                    Kind::Redis => REDIS_IN_FLIGHT - unanswered,
                };
                let n = if plan.rate > 0 { 1 } else { room.min(BATCH) }
                    .min(plan.publishes - sent.written);
                out.clear();
                for _ in 0..n {
                    let now = unix_micros();
                    if sent.written == 0 && out.is_empty() {
                        sent.first_us = now;
                    }
                    sent.last_us = now;
                    stamp(&mut payload, now, plan.payload);
                    match plan.kind {
                        Kind::Nats => nats::publish(&mut out, SUBJECT, &payload),
                        Kind::Redis => resp::publish(&mut out, SUBJECT, &payload),
                    }
                }
                write(&mut stream, &out).await?;
                sent.written += n;
                match plan.kind {
                    Kind::Nats => {}
                    Kind::Redis => unanswered += n,
                }
            }
        }
    }
    if plan.kind == Kind::Nats {
        sent.published = sent.written;
    }
    Ok(sent)
}

/// The next tick of `ticker`, or at once without one.
async fn tick(ticker: &mut Option<Interval>) {
    if let Some(t) = ticker.as_mut() {
        t.tick().await;
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes))
        .await
        .context("publisher write timed out")?
        .context("publisher write")
}

/// Writes the payload stamped `t_us` into `out`:
/// `{"t":<t_us>,"p":"xxx…"}`, `size` bytes long (or its fixed part).
pub(crate) fn stamp(out: &mut Vec<u8>, t_us: u64, size: usize) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"t\":{t_us},\"p\":\"");
    let padding = size.saturating_sub(out.len() + 2);
    out.resize(out.len() + padding, b'x');
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::sent_at_us;

    #[test]
    fn stamps_are_padded_and_read_back() {
        let t = 1_750_000_000_123_456;
        let mut out = Vec::new();
        for size in [64, 100, 1024, 16 * 1024] {
            stamp(&mut out, t, size);
            assert_eq!(out.len(), size);
            assert_eq!(sent_at_us(&out), Some(t));
        }
        stamp(&mut out, t, 1);
        assert_eq!(out, br#"{"t":1750000000123456,"p":""}"#);
        assert_eq!(sent_at_us(&out), Some(t));
    }

    #[test]
    fn send_rate_counts_intervals() {
        let sent = Sent {
            first_us: 0,
            last_us: 1_000_000,
            written: 1001,
            ..Sent::default()
        };
        assert!((sent.send_rate() - 1000.0).abs() < 1e-9);
    }
}
