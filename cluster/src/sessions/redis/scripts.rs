//! The Lua scripts of the Redis session store.
//!
//! Each script touches keys of exactly one hash slot, so it runs atomically on
//! a single server and on a Redis Cluster alike. Times are Unix milliseconds
//! passed in by the caller (the logic nodes' clocks, kept in step by NTP).
//!
//! Session field values are `"<added_ms>|<comet_id>[|<device>]"`: the time
//! is all digits, so the first `|` splits it off even when the comet id
//! holds one. The time orders a user's adds and removes in the online index
//! (`ONLINE_SETTLE`).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: user hash, the connection's ended marker. ARGV: conn key, value.
/// Unless the connection was ended, stores the session. Returns 1 if
/// stored, 0 if ended.
pub(crate) static SESSION_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// KEYS: user hash. ARGV: conn key, comet id.
/// Removes the session if it is on that comet. Returns
/// `{removed, removed_added_ms, newest_remaining_added_ms}` (0 = none left).
pub(crate) static SESSION_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0, 0, 0} end
local added, comet = string.match(v, '^(%d+)|([^|]*)')
if added == nil or comet ~= ARGV[2] then return {0, 0, 0} end
redis.call('HDEL', KEYS[1], ARGV[1])
local best = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local a = tonumber(string.match(all[i + 1], '^(%d+)|'))
  if a ~= nil and a > best then best = a end
end
return {1, tonumber(added), best}
",
    )
});

/// KEYS: online uids zset (score 0), online since zset. ARGV: uid, added ms.
/// Lists the user as online, its score the newest session's add time.
pub(crate) static ONLINE_TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
",
    )
});

/// KEYS: online uids zset, online since zset. ARGV: uid, removed session's
/// add time, newest remaining session's add time (0 = none).
/// After a removal, lowers the user's score to what remains (or drops the
/// user) unless a newer add raised it meanwhile.
pub(crate) static ONLINE_SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not cur then return 0 end
local removed = tonumber(ARGV[2])
local remaining = tonumber(ARGV[3])
if tonumber(cur) > math.max(removed, remaining) then return 0 end
if remaining > 0 then
  redis.call('ZADD', KEYS[2], remaining, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
",
    )
});

/// KEYS: reports hash, report expiry zset, known comets set. ARGV: comet
/// id, report field, report JSON, expiry ms, now ms. Stores the report,
/// lists the comet as known and drops a bounded batch of expired reports.
pub(crate) static REPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[5], 'LIMIT', 0, 64)
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return 1
",
    )
});
