//! Redis message store, for a single server or a Redis Cluster.
//!
//! # Key layout
//!
//! One hash tag per stream (`{u:<uid>}` for a user, the same slot as its
//! sessions; `{r:<room>}` for a room), so every script touches one slot and
//! runs atomically on a cluster too.
//!
//! | key | type | content | lifetime |
//! |---|---|---|---|
//! | `courier:{u:<uid>}:head` | hash | `epoch`, `seq` (last assigned), `ack_epoch`, `ack_seq` | PEXPIRE max_age, renewed by appends |
//! | `courier:{u:<uid>}:inbox` | zset | score seq, member `<16-digit stored-at ms><message>` | PEXPIRE max_age, renewed by appends |
//! | `courier:{u:<uid>}:dedup:<key>` | string | `"<seq> <epoch>"` | PX dedup window |
//! | `courier:{r:<room>}:head`, `:history`, `:dedup:<key>` | | the same for a room | |
//!
//! The stored-at prefix is fixed-width digits, so the append script can trim
//! by age by reading the oldest member's first 16 bytes, and members stay
//! unique (a message's bytes hold its id). Times are Unix milliseconds from
//! the logic nodes' clocks, as for the session store.
//!
//! Memory per stored message is the member (16 bytes plus the encoded
//! message) and the sorted set's bookkeeping; see the README for a measured
//! figure.

use async_trait::async_trait;
use courier_proto::with_position;
use redis::{Script, Value};

use super::{new_epoch, Appended, Head, Inbox, InboxOptions, NewMessage, Page, Start, Stream};
use crate::sessions::redis::conn::{corrupt, redis_error};
use crate::sessions::redis::RedisConn;
use crate::{now_ms, Result};

/// Width of the stored-at prefix of a member.
const STAMP: usize = 16;

/// Most age-expired messages one script removes (the rest go with later
/// calls or the key's own expiry), bounding the script's run time.
const MAX_AGE_TRIM: usize = 64;

/// KEYS: head, messages[, dedup]. ARGV: stamp (16 digits, now ms), message,
/// new epoch, max count, max age ms, dedup ttl ms.
/// Returns `{repeat, seq, epoch}`.
static APPEND: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
if #KEYS == 3 then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local seq, epoch = string.match(seen, '^(%d+) (%d+)$')
    if seq then return {1, seq, epoch} end
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], seq, ARGV[1] .. ARGV[2])
local max = tonumber(ARGV[4])
local n = redis.call('ZCARD', KEYS[2])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1) end
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[5])
for _ = 1, tonumber(ARGV[7]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 or tonumber(string.sub(oldest[1], 1, 16)) > cutoff then break end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if #KEYS == 3 then redis.call('SET', KEYS[3], seq .. ' ' .. epoch, 'PX', ARGV[6]) end
return {0, seq, epoch}
",
    )
});

/// KEYS: head, messages. ARGV: client epoch (0: none), after seq, limit,
/// max bytes, new epoch (if the client is ahead), `ack` to start after the
/// acknowledged position, now ms, max age ms, most expired messages to drop.
/// Messages past their age are dropped first, so they are never served.
/// Returns `{epoch, last, first, gap, reset, seq1, member1, seq2, ...}`.
static READ: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'ack_epoch', 'ack_seq')
local epoch = h[1] or '0'
local last = tonumber(h[2] or '0')
local ce = ARGV[1]
local after = tonumber(ARGV[2])
local reset = 0
if ARGV[6] == 'ack' then
  if h[3] and h[3] == epoch then after = tonumber(h[4]) else after = 0 end
elseif ce == '0' then
elseif ce ~= epoch then
  reset = 1
  after = 0
elseif after > last then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  reset = 1
  after = 0
end
local cutoff = tonumber(ARGV[7]) - tonumber(ARGV[8])
local first = 0
for _ = 1, tonumber(ARGV[9]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #oldest == 0 then break end
  if tonumber(string.sub(oldest[1], 1, 16)) > cutoff then
    first = tonumber(oldest[2])
    break
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, 0)
end
local next_held = first
if first == 0 then next_held = last + 1 end
local gap = 0
if reset == 0 and after + 1 < next_held then gap = 1 end
local out = {epoch, last, first, gap, reset}
local limit = tonumber(ARGV[3])
if limit > 0 then
  local items = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. after, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
  local budget = tonumber(ARGV[4])
  local used = 0
  for i = 1, #items, 2 do
    local size = #items[i] - 16
    if used > 0 and used + size > budget then break end
    used = used + size
    out[#out + 1] = items[i + 1]
    out[#out + 1] = items[i]
  end
end
return out
",
    )
});

/// KEYS: head. ARGV: epoch, seq. Raises the acknowledged position.
static ACK: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'ack_epoch', 'ack_seq')
if not h[1] or h[1] ~= ARGV[1] then return 0 end
local seq = tonumber(ARGV[2])
local last = tonumber(h[2] or '0')
if seq > last then seq = last end
local current = 0
if h[3] == h[1] then current = tonumber(h[4] or '0') end
if seq > current then redis.call('HSET', KEYS[1], 'ack_epoch', h[1], 'ack_seq', seq) end
return 1
",
    )
});

/// Redis message store. See the module docs.
#[derive(Debug, Clone)]
pub struct RedisInbox {
    conn: RedisConn,
    opts: InboxOptions,
}

/// The key prefix of a stream, hash tag included.
fn prefix(stream: Stream<'_>) -> String {
    match stream {
        Stream::User(uid) => format!("courier:{{u:{uid}}}"),
        Stream::Room(room) => format!("courier:{{r:{room}}}"),
    }
}

fn messages_key(stream: Stream<'_>) -> String {
    match stream {
        Stream::User(_) => format!("{}:inbox", prefix(stream)),
        Stream::Room(_) => format!("{}:history", prefix(stream)),
    }
}

fn stamp(now_ms: i64) -> String {
    format!("{:0width$}", now_ms.max(0), width = STAMP)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisInbox {
    /// A store over `conn` with these bounds.
    pub fn new(conn: RedisConn, opts: InboxOptions) -> Self {
        Self { conn, opts }
    }
}

/// Reads an integer that a script returned as a number or a string.
fn int(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).map_err(|e| corrupt(what, e)),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(what, "not a number")),
        Value::SimpleString(s) => s.parse().map_err(|e| corrupt(what, e)),
        other => Err(corrupt(what, format!("unexpected {other:?}"))),
    }
}

#[async_trait]
impl Inbox for RedisInbox {
    async fn append(&self, stream: Stream<'_>, message: NewMessage<'_>) -> Result<Appended> {
        let limits = self.opts.limits(stream);
        let p = prefix(stream);
        let mut invocation = APPEND.prepare_invoke();
        invocation
            .key(format!("{p}:head"))
            .key(messages_key(stream));
        if let Some(dedup) = message.dedup {
            invocation.key(format!("{p}:dedup:{dedup}"));
        }
        invocation
            .arg(stamp(now_ms()))
            .arg(&message.message[..])
            .arg(new_epoch())
            .arg(limits.max_messages)
            .arg(millis(limits.max_age))
            .arg(millis(self.opts.dedup_window))
            .arg(MAX_AGE_TRIM);
        let reply: Vec<Value> = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        let [repeat, seq, epoch] = reply.as_slice() else {
            return Err(corrupt("append reply", format!("{reply:?}")));
        };
        Ok(Appended {
            repeat: int(repeat, "append reply")? == 1,
            seq: int(seq, "seq")?,
            epoch: int(epoch, "epoch")?,
        })
    }

    async fn read(
        &self,
        stream: Stream<'_>,
        start: Start,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page> {
        let limits = self.opts.limits(stream);
        let (epoch, after, mode) = match start {
            Start::Position { epoch, after_seq } => (epoch, after_seq, "position"),
            Start::Acked => (0, 0, "ack"),
        };
        let reply: Vec<Value> = READ
            .key(format!("{}:head", prefix(stream)))
            .key(messages_key(stream))
            .arg(epoch)
            .arg(after)
            .arg(limit)
            .arg(max_bytes)
            .arg(new_epoch())
            .arg(mode)
            .arg(now_ms())
            .arg(millis(limits.max_age))
            .arg(MAX_AGE_TRIM)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        let (fixed, items) = reply.split_at(reply.len().min(5));
        let [epoch, last, first, gap, reset] = fixed else {
            return Err(corrupt("read reply", format!("{reply:?}")));
        };
        let head = Head {
            epoch: int(epoch, "epoch")?,
            last_seq: int(last, "seq")?,
            first_seq: int(first, "first seq")?,
        };
        let mut messages = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let [seq, member] = pair else {
                return Err(corrupt("read reply", "odd item count"));
            };
            let Value::BulkString(member) = member else {
                return Err(corrupt("stored message", format!("{member:?}")));
            };
            let body = member
                .get(STAMP..)
                .ok_or_else(|| corrupt("stored message", "shorter than its stamp"))?;
            messages.push(with_position(body, int(seq, "seq")?, head.epoch));
        }
        Ok(Page {
            head,
            messages,
            gap: int(gap, "gap")? == 1,
            reset: int(reset, "reset")? == 1,
        })
    }

    async fn ack(&self, uid: &str, epoch: u64, seq: u64) -> Result<()> {
        ACK.key(format!("{}:head", prefix(Stream::User(uid))))
            .arg(epoch)
            .arg(seq)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_fixed_width() {
        assert_eq!(stamp(1_732_000_000_000), "0001732000000000");
        assert_eq!(stamp(-5).len(), STAMP);
    }
}
