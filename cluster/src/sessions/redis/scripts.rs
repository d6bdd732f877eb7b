//! The Lua scripts of the Redis session store.
//!
//! Each script touches keys of exactly one hash slot, so it runs atomically on
//! a single server and on a Redis Cluster alike. Times are Unix milliseconds
//! passed in by the caller (the logic nodes' clocks, kept in step by NTP).
//!
//! Session field values are `"<added_ms>|<comet_id>[|<device>]"`: the time
//! is all digits, so the first `|` splits it off even when the comet id
//! holds one. Add times order a user's adds and removes in the online
//! index (`ONLINE_SETTLE`), through the user's last-add time kept beside
//! its hash, so no script walks a user's sessions but `SESSION_ADD_ALONE`,
//! which must see them all (a `reject_new` user has one or a few).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: user hash, the connection's ended marker, the user's last-add
/// time. ARGV: conn key, value, added ms.
/// Unless the connection was ended, stores the session and raises the
/// user's last-add time. Returns 1 if stored, 0 if ended.
pub(crate) static SESSION_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[3]) > last then redis.call('SET', KEYS[3], ARGV[3]) end
return 1
",
    )
});

/// KEYS and ARGV as [`SESSION_ADD`], plus ARGV[4]: the session's device
/// ("" for none). Adds only if every other field of the user hash is this
/// key or (a device given) this device; returns 1 if added. O(sessions of
/// the user).
pub(crate) static SESSION_ADD_ALONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local device = string.match(all[i + 1], '^%d+|[^|]*|(.*)$')
    if ARGV[4] == '' or device ~= ARGV[4] then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[3]) > last then redis.call('SET', KEYS[3], ARGV[3]) end
return 1
",
    )
});

/// KEYS: user hash, the user's last-add time. ARGV: conn key, comet id.
/// Removes the session if it is on that comet. Returns
/// `{removed, sessions_left, last_add_ms}`; the last-add time goes with
/// the user's last session. O(1) however many sessions the user has.
pub(crate) static SESSION_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0, 0, 0} end
local comet = string.match(v, '^%d+|([^|]*)')
if comet == nil or comet ~= ARGV[2] then return {0, 0, 0} end
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HLEN', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if left == 0 then redis.call('DEL', KEYS[2]) end
return {1, left, last}
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

/// KEYS: online uids zset, online since zset. ARGV: uid, sessions left,
/// the user's last-add time when its session was removed.
/// Drops a user with no session left from the online index, unless an add
/// newer than that last-add time has touched it meanwhile (its session
/// exists, in the user's slot, after the removal).
pub(crate) static ONLINE_SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(ARGV[2]) > 0 then return 0 end
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not cur then return 0 end
if tonumber(cur) > tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
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
