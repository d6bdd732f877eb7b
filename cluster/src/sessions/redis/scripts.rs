//! The Lua scripts of the Redis session store.
//!
//! Each script touches keys of exactly one hash slot, so it runs atomically on
//! a single server and on a Redis Cluster alike. Times are Unix milliseconds
//! passed in by the caller (the logic nodes' clocks, kept in step by NTP), so
//! every expiry in the store is on the same clock. An entry is live while its
//! expiry is strictly greater than now.
//!
//! Session field values are `"<expiry_ms>|<comet_id>"`: the expiry is all
//! digits, so the first `|` splits them even when the comet id holds one.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: user hash, the connection's ended marker. ARGV: conn key, value,
/// ttl ms, now ms.
/// Unless the connection was ended, stores the session, drops the user's
/// expired ones and renews the hash TTL. Returns 1 if stored, 0 if ended.
/// A value is `<expiry ms>|<comet id>` or `<expiry ms>|<comet id>|<device>`.
pub(crate) static SESSION_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now = tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i + 1], '^(%d+)|'))
  if exp == nil or exp <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
",
    )
});

/// KEYS: user hash. ARGV: conn key, comet id, new expiry ms, ttl ms, now ms.
/// Returns 1 if the session was live on that comet and is renewed (its
/// device kept), else 0.
pub(crate) static SESSION_RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local exp, comet = string.match(v, '^(%d+)|([^|]*)')
if exp == nil or tonumber(exp) <= tonumber(ARGV[5]) or comet ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. string.sub(v, #exp + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
",
    )
});

/// KEYS: user hash. ARGV: conn key, comet id, now ms.
/// Removes the session if it is on that comet. Returns
/// `{removed, removed_expiry, latest_remaining_live_expiry}` (0 = none).
pub(crate) static SESSION_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0, 0, 0} end
local exp, comet = string.match(v, '^(%d+)|([^|]*)')
if exp == nil or comet ~= ARGV[2] then return {0, 0, 0} end
redis.call('HDEL', KEYS[1], ARGV[1])
local now = tonumber(ARGV[3])
local best = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local e = tonumber(string.match(all[i + 1], '^(%d+)|'))
  if e ~= nil and e > now and e > best then best = e end
end
return {1, tonumber(exp), best}
",
    )
});

/// KEYS: online uids zset (score 0), online expiry zset. ARGV: uid, expiry
/// ms, now ms. Marks the user online until at least `expiry` and trims a
/// bounded batch of users whose sessions all expired.
pub(crate) static ONLINE_TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 64)
for _, u in ipairs(dead) do
  redis.call('ZREM', KEYS[2], u)
  redis.call('ZREM', KEYS[1], u)
end
return 1
",
    )
});

/// KEYS: online uids zset, online expiry zset. ARGV: uid, removed session's
/// expiry, latest remaining live expiry (0 = none), now ms.
/// After a removal, lowers the user's online expiry to what remains (or
/// drops the user) unless a newer add or renew raised it meanwhile.
pub(crate) static ONLINE_SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not cur then return 0 end
local removed = tonumber(ARGV[2])
local remaining = tonumber(ARGV[3])
if tonumber(cur) > math.max(removed, remaining) then return 0 end
if remaining > tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], remaining, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
",
    )
});

/// KEYS: online uids zset, online expiry zset. ARGV: cursor ("" = start),
/// wanted count, now ms, scan budget. Walks uids in order after the cursor
/// and returns `{live uids (at most wanted), resume}`: `resume` is the last
/// uid scanned when the budget ran out first, else "".
pub(crate) static ONLINE_PAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local want = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local out = {}
local last = ''
while budget > 0 do
  local n = math.min(budget, 256)
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, n)
  for _, u in ipairs(batch) do
    last = u
    local s = redis.call('ZSCORE', KEYS[2], u)
    if s and tonumber(s) > now then
      out[#out + 1] = u
      if #out >= want then return {out, ''} end
    end
  end
  if #batch < n then return {out, ''} end
  budget = budget - #batch
  start = '(' .. last
end
return {out, last}
",
    )
});

/// KEYS: reports hash, report expiry zset. ARGV: comet id, report JSON,
/// expiry ms, now ms. Stores the report and drops a bounded batch of
/// expired ones.
pub(crate) static REPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 64)
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return 1
",
    )
});
