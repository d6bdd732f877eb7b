//! Redis session store, for a single server (`redis://`) or a Redis Cluster
//! (`redis+cluster://`).
//!
//! # Key layout
//!
//! Everything lives under `courier:`. A `{...}` hash tag marks keys that a
//! script touches together, so they share a slot in cluster mode.
//!
//! | key | type | content | lifetime |
//! |---|---|---|---|
//! | `courier:{u:<uid>}:sessions` | hash | conn key -> `"<added_ms>\|<comet_id>[\|<device>]"` | until the last session goes |
//! | `courier:{u:<uid>}:ended:<key>` | string | marker of an ended session | PX ended_ttl |
//! | `courier:{u:<uid>}:last-add` | string | `added_ms` of the user's newest session | until the last session goes |
//! | `courier:k:<key>` | string | `Session` as JSON | until the session goes |
//! | `courier:{c:<comet>}:sessions` | set | `<uid>\x1f<key>` of the comet's sessions | until the comet is forgotten |
//! | `courier:{online}:uids` | zset | uid, score 0 (for paging by uid) | while the user has a session |
//! | `courier:{online}:since` | zset | uid, score = its newest session's `added_ms` | while the user has a session |
//! | `courier:{r:<room>}:comets` | hash | comet id -> registration time ms | until the comet leaves the room or is forgotten |
//! | `courier:{c:<comet>}:rooms` | set | rooms the comet registered | until the comet is forgotten |
//! | `courier:{comets}:reports` | hash | comet id -> report JSON (with its expiry) | trimmed on reports |
//! | `courier:{comets}:expiry` | zset | comet id, score = report expiry ms | trimmed on reports |
//! | `courier:{comets}:known` | set | comets that reported | until the comet is forgotten |
//! | `courier:{comets}:mark` | integer | the loss-detection counter (`Sessions::mark`) | no TTL |
//!
//! # Why this shape
//!
//! Recipient resolution (`user_sessions`, `key_session`, `room_comets`) is
//! one command on one key. Writes that touch one slot are Lua scripts (see
//! `scripts`), so each is atomic even on a cluster; writes spanning slots
//! (a session's user hash, key index, comet set and online entry) are
//! issued concurrently. Nothing is written while a connection idles: a
//! session is written when it opens and when it closes, and a dead comet's
//! sessions and rooms go when logic forgets the comet (`forget_comet`),
//! walking the comet's session set. The online counts and room counts are
//! computed from the live comet reports, one small hash read (fine for
//! dozens of comets).
//!
//! Expiries are Unix milliseconds from the writer's clock (see `scripts`).

use std::collections::HashMap;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{CometReport, Online, Session, SessionOptions, Sessions};
use crate::{now_ms, Result};

mod scripts;

use crate::redis::{corrupt, redis_error, RedisConn};

const ONLINE_UIDS: &str = "courier:{online}:uids";
const ONLINE_SINCE: &str = "courier:{online}:since";
const REPORTS: &str = "courier:{comets}:reports";
const REPORT_EXPIRY: &str = "courier:{comets}:expiry";
const KNOWN_COMETS: &str = "courier:{comets}:known";
/// The loss-detection counter ([`Sessions::mark`]). On a Redis Cluster it
/// lives on one node; a loss on another node is caught by the session
/// checks instead.
const MARK: &str = "courier:{comets}:mark";
/// Separates uid and key in a comet's session set; a control character,
/// which neither may contain.
const MEMBER_SEPARATOR: char = '\u{1f}';
/// Sessions of a forgotten comet read (and removed) per round.
const FORGET_BATCH: usize = 1_000;
/// Most uids one `online_users` page holds.
const MAX_PAGE: usize = 10_000;
/// Room registrations of one report in flight at once.
const REPORT_FANOUT: usize = 64;

fn user_key(uid: &str) -> String {
    format!("courier:{{u:{uid}}}:sessions")
}

/// The add time of the user's newest session (same slot as the user hash).
fn last_add_key(uid: &str) -> String {
    format!("courier:{{u:{uid}}}:last-add")
}

/// Marks a connection the login policy ended (same slot as the user hash).
fn ended_key(uid: &str, key: &str) -> String {
    format!("courier:{{u:{uid}}}:ended:{key}")
}

/// A session's value in the user hash (see `scripts::SESSION_ADD`).
fn session_value(added_ms: i64, session: &Session) -> String {
    match session.device.as_str() {
        "" => format!("{added_ms}|{}", session.comet_id),
        device => format!("{added_ms}|{}|{device}", session.comet_id),
    }
}

/// The comet's session set, and a session's member in it.
fn comet_sessions_key(comet_id: &str) -> String {
    format!("courier:{{c:{comet_id}}}:sessions")
}

fn comet_member(session: &Session) -> String {
    format!("{}{MEMBER_SEPARATOR}{}", session.uid, session.key)
}

fn conn_key(key: &str) -> String {
    format!("courier:k:{key}")
}

fn room_key(room: &str) -> String {
    format!("courier:{{r:{room}}}:comets")
}

fn comet_rooms_key(comet_id: &str) -> String {
    format!("courier:{{c:{comet_id}}}:rooms")
}

/// A comet report (part) as stored: the part plus when it stops counting.
#[derive(Debug, Serialize, Deserialize)]
struct StoredReport {
    expires_ms: i64,
    connections: u32,
    rooms: HashMap<String, u32>,
    #[serde(default)]
    part: u32,
    #[serde(default = "one")]
    parts: u32,
}

fn one() -> u32 {
    1
}

/// Separates a comet id from a part number in a report field. A control
/// character, which no comet id may contain.
const PART_SEPARATOR: char = '\u{1f}';

/// The report field of `comet_id`'s `part`: the bare id for part 0.
fn report_field(comet_id: &str, part: u32) -> String {
    match part {
        0 => comet_id.to_owned(),
        n => format!("{comet_id}{PART_SEPARATOR}{n}"),
    }
}

/// The comet id of a report field.
fn report_comet(field: &str) -> &str {
    field.split(PART_SEPARATOR).next().unwrap_or(field)
}

/// Redis session store. See the module docs.
#[derive(Debug, Clone)]
pub struct RedisSessions {
    conn: RedisConn,
    ended_ttl_ms: i64,
    comet_ttl_ms: i64,
}

impl RedisSessions {
    /// A store over `conn` with these lifetimes (each at least 1 ms).
    pub fn new(conn: RedisConn, opts: SessionOptions) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        Self {
            conn,
            ended_ttl_ms: ms(opts.ended_ttl),
            comet_ttl_ms: ms(opts.comet_ttl),
        }
    }

    /// Runs `script` (`SESSION_ADD` or `SESSION_ADD_ALONE`, which take the
    /// same keys and arguments; the device is only read by the second) for
    /// `session`, and indexes it if stored. Whether it was stored.
    async fn store(&self, script: &redis::Script, session: &Session) -> Result<bool> {
        let added = now_ms();
        let stored: i64 = script
            .key(user_key(&session.uid))
            .key(ended_key(&session.uid, &session.key))
            .key(last_add_key(&session.uid))
            .arg(&session.key)
            .arg(session_value(added, session))
            .arg(added)
            .arg(&session.device)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if stored == 0 {
            return Ok(false);
        }
        self.index(session, added).await?;
        Ok(true)
    }

    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The writes of an added session outside its user's slot: the key
    /// index, the comet's session set and the online index.
    async fn index(&self, session: &Session, added_ms: i64) -> Result<()> {
        let json = serde_json::to_string(session).map_err(|e| corrupt("session", e))?;
        let mut key_conn = self.conn();
        let mut comet_conn = self.conn();
        let mut online_conn = self.conn();
        let by_key = key_conn.set::<_, _, ()>(conn_key(&session.key), json);
        let by_comet = comet_conn
            .sadd::<_, _, ()>(comet_sessions_key(&session.comet_id), comet_member(session));
        let mut touch = scripts::ONLINE_TOUCH.key(ONLINE_UIDS);
        touch.key(ONLINE_SINCE).arg(&session.uid).arg(added_ms);
        let online = touch.invoke_async::<()>(&mut online_conn);
        futures::try_join!(by_key, by_comet, online).map_err(redis_error)?;
        Ok(())
    }

    /// Records `comet_id` in `room` and `room` in the comet's set (two
    /// slots, so two commands; `forget_comet` undoes both).
    async fn register_room(&self, room: &str, comet_id: &str, now: i64) -> Result<()> {
        let mut room_conn = self.conn();
        let mut set_conn = self.conn();
        let in_room = room_conn.hset::<_, _, _, ()>(room_key(room), comet_id, now);
        let in_set = set_conn.sadd::<_, _, ()>(comet_rooms_key(comet_id), room);
        futures::try_join!(in_room, in_set).map_err(redis_error)?;
        Ok(())
    }

    /// Removes every session of `comet_id`, a batch at a time, then its
    /// session set.
    async fn forget_sessions(&self, comet_id: &str) -> Result<()> {
        let set = comet_sessions_key(comet_id);
        let set = set.as_str();
        loop {
            let members: Vec<String> = self
                .conn()
                .srandmember_multiple(set, FORGET_BATCH as isize)
                .await
                .map_err(redis_error)?;
            if members.is_empty() {
                return Ok(());
            }
            futures::stream::iter(members)
                .map(|member| async move {
                    let Some((uid, key)) = member.split_once(MEMBER_SEPARATOR) else {
                        // Not ours to parse: drop it so the walk ends.
                        return self
                            .conn()
                            .srem::<_, _, ()>(set, &member)
                            .await
                            .map_err(redis_error);
                    };
                    let session = Session {
                        uid: uid.to_owned(),
                        key: key.to_owned(),
                        comet_id: comet_id.to_owned(),
                        device: String::new(),
                    };
                    self.remove(&session).await?;
                    // `remove` takes it out of the set only if the user hash
                    // still held it.
                    self.conn()
                        .srem::<_, _, ()>(set, &member)
                        .await
                        .map_err(redis_error)
                })
                .buffer_unordered(REPORT_FANOUT)
                .try_collect::<()>()
                .await?;
        }
    }

    /// The current parts of the live comet reports, with their comet ids
    /// (see [`super::current_parts`]).
    async fn live_reports(&self) -> Result<Vec<(String, CometReport)>> {
        let now = now_ms();
        let raw: HashMap<String, String> =
            self.conn().hgetall(REPORTS).await.map_err(redis_error)?;
        let mut live = Vec::with_capacity(raw.len());
        for (field, json) in raw {
            let stored: StoredReport =
                serde_json::from_str(&json).map_err(|e| corrupt("comet report", e))?;
            if stored.expires_ms > now {
                let report = CometReport {
                    connections: stored.connections,
                    rooms: stored.rooms,
                    part: stored.part,
                    parts: stored.parts,
                };
                live.push((report_comet(&field).to_owned(), report));
            }
        }
        let current = super::current_parts(live.iter().map(|(id, r)| (id.as_str(), r)))
            .into_iter()
            .map(|(id, r)| (id.to_owned(), r.clone()))
            .collect();
        Ok(current)
    }
}

/// Splits a user-hash field value `"<added_ms>|<comet_id>[|<device>]"`
/// into the comet id and the device.
fn parse_field(value: &str) -> Result<(&str, &str)> {
    let mut fields = value.splitn(3, '|');
    let _added = fields.next();
    let comet = fields
        .next()
        .ok_or_else(|| corrupt("session entry", format!("no `|` in {value:?}")))?;
    let device = fields.next().unwrap_or_default();
    Ok((comet, device))
}

#[async_trait]
impl Sessions for RedisSessions {
    async fn add(&self, session: &Session) -> Result<()> {
        self.revive(session).await.map(drop)
    }

    async fn revive(&self, session: &Session) -> Result<bool> {
        self.store(&scripts::SESSION_ADD, session).await
    }

    async fn add_alone(&self, session: &Session) -> Result<bool> {
        self.store(&scripts::SESSION_ADD_ALONE, session).await
    }

    async fn end(&self, session: &Session) -> Result<()> {
        // The marker first: a revive that runs after the removal sees it.
        let ttl = u64::try_from(self.ended_ttl_ms).unwrap_or(u64::MAX);
        self.conn()
            .pset_ex::<_, _, ()>(ended_key(&session.uid, &session.key), 1, ttl)
            .await
            .map_err(redis_error)?;
        self.remove(session).await
    }

    async fn check(&self, session: &Session) -> Result<bool> {
        let value: Option<String> = self
            .conn()
            .hget(user_key(&session.uid), &session.key)
            .await
            .map_err(redis_error)?;
        match value {
            Some(v) => Ok(parse_field(&v)?.0 == session.comet_id),
            None => Ok(false),
        }
    }

    async fn remove(&self, session: &Session) -> Result<()> {
        let (removed, left, last_add): (i64, i64, i64) = scripts::SESSION_REMOVE
            .key(user_key(&session.uid))
            .key(last_add_key(&session.uid))
            .arg(&session.key)
            .arg(&session.comet_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if removed == 0 {
            return Ok(());
        }
        let mut key_conn = self.conn();
        let mut comet_conn = self.conn();
        let mut online_conn = self.conn();
        let unindex = key_conn.del::<_, ()>(conn_key(&session.key));
        let from_comet = comet_conn
            .srem::<_, _, ()>(comet_sessions_key(&session.comet_id), comet_member(session));
        let mut settle = scripts::ONLINE_SETTLE.key(ONLINE_UIDS);
        settle
            .key(ONLINE_SINCE)
            .arg(&session.uid)
            .arg(left)
            .arg(last_add);
        let settle = settle.invoke_async::<()>(&mut online_conn);
        futures::try_join!(unindex, from_comet, settle).map_err(redis_error)?;
        Ok(())
    }

    async fn user_sessions(&self, uid: &str) -> Result<Vec<Session>> {
        let raw: HashMap<String, String> = self
            .conn()
            .hgetall(user_key(uid))
            .await
            .map_err(redis_error)?;
        let mut sessions = Vec::with_capacity(raw.len());
        for (key, value) in raw {
            let (comet, device) = parse_field(&value)?;
            sessions.push(Session {
                uid: uid.to_owned(),
                comet_id: comet.to_owned(),
                key,
                device: device.to_owned(),
            });
        }
        Ok(sessions)
    }

    async fn key_session(&self, key: &str) -> Result<Option<Session>> {
        let json: Option<String> = self.conn().get(conn_key(key)).await.map_err(redis_error)?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("key index", e)))
            .transpose()
    }

    async fn add_room_comet(&self, room: &str, comet_id: &str) -> Result<()> {
        self.register_room(room, comet_id, now_ms()).await
    }

    async fn remove_room_comet(&self, room: &str, comet_id: &str) -> Result<()> {
        let mut room_conn = self.conn();
        let mut set_conn = self.conn();
        let from_room = room_conn.hdel::<_, _, ()>(room_key(room), comet_id);
        let from_set = set_conn.srem::<_, _, ()>(comet_rooms_key(comet_id), room);
        futures::try_join!(from_room, from_set).map_err(redis_error)?;
        Ok(())
    }

    async fn room_comets(&self, room: &str) -> Result<Vec<String>> {
        let mut comets: Vec<String> = self
            .conn()
            .hkeys(room_key(room))
            .await
            .map_err(redis_error)?;
        comets.sort_unstable();
        Ok(comets)
    }

    async fn report_comet(&self, comet_id: &str, report: &CometReport) -> Result<()> {
        let now = now_ms();
        let expires = now.saturating_add(self.comet_ttl_ms);
        let stored = StoredReport {
            expires_ms: expires,
            connections: report.connections,
            rooms: report.rooms.clone(),
            part: report.part,
            parts: report.parts.max(1),
        };
        let json = serde_json::to_string(&stored).map_err(|e| corrupt("comet report", e))?;
        scripts::REPORT
            .key(REPORTS)
            .key(REPORT_EXPIRY)
            .key(KNOWN_COMETS)
            .arg(comet_id)
            .arg(report_field(comet_id, report.part))
            .arg(json)
            .arg(expires)
            .arg(now)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(redis_error)?;
        // Owned room names: a borrowing closure here trips the higher-ranked
        // lifetime check of the boxed `async_trait` future.
        futures::stream::iter(report.rooms.keys().cloned())
            .map(|room| async move { self.register_room(&room, comet_id, now).await })
            .buffer_unordered(REPORT_FANOUT)
            .try_collect::<()>()
            .await
    }

    async fn forget_comet(&self, comet_id: &str) -> Result<()> {
        self.forget_sessions(comet_id).await?;
        let set = comet_rooms_key(comet_id);
        let rooms: Vec<String> = self.conn().smembers(&set).await.map_err(redis_error)?;
        futures::stream::iter(rooms)
            .map(|room| async move {
                self.conn()
                    .hdel::<_, _, ()>(room_key(&room), comet_id)
                    .await
                    .map_err(redis_error)
            })
            .buffer_unordered(REPORT_FANOUT)
            .try_collect::<()>()
            .await?;
        let fields: Vec<String> = self.conn().hkeys(REPORTS).await.map_err(redis_error)?;
        let parts: Vec<String> = fields
            .into_iter()
            .filter(|f| report_comet(f) == comet_id)
            .collect();
        let mut set_conn = self.conn();
        set_conn.del::<_, ()>(&set).await.map_err(redis_error)?;
        self.conn()
            .srem::<_, _, ()>(KNOWN_COMETS, comet_id)
            .await
            .map_err(redis_error)?;
        if !parts.is_empty() {
            let mut report_conn = self.conn();
            let mut expiry_conn = self.conn();
            futures::try_join!(
                report_conn.hdel::<_, _, ()>(REPORTS, &parts),
                expiry_conn.zrem::<_, _, ()>(REPORT_EXPIRY, &parts),
            )
            .map_err(redis_error)?;
        }
        Ok(())
    }

    async fn known_comets(&self) -> Result<Vec<String>> {
        let mut known: Vec<String> = self
            .conn()
            .smembers(KNOWN_COMETS)
            .await
            .map_err(redis_error)?;
        known.sort_unstable();
        Ok(known)
    }

    async fn online(&self) -> Result<Online> {
        let mut conn = self.conn();
        let users = async {
            conn.zcard::<_, u64>(ONLINE_SINCE)
                .await
                .map_err(redis_error)
        };
        let (reports, users) = futures::try_join!(self.live_reports(), users)?;
        let mut comets: Vec<(String, u32)> = reports
            .into_iter()
            .filter(|(_, r)| r.part == 0)
            .map(|(id, r)| (id, r.connections))
            .collect();
        comets.sort_unstable();
        Ok(Online {
            connections: comets.iter().map(|(_, c)| u64::from(*c)).sum(),
            users,
            comets,
        })
    }

    async fn room_online(&self, room: &str) -> Result<u64> {
        Ok(self
            .live_reports()
            .await?
            .iter()
            .filter_map(|(_, r)| r.rooms.get(room))
            .map(|c| u64::from(*c))
            .sum())
    }

    async fn room_counts(&self) -> Result<HashMap<String, u64>> {
        let mut totals: HashMap<String, u64> = HashMap::new();
        for (_, report) in self.live_reports().await? {
            for (room, count) in report.rooms {
                *totals.entry(room).or_default() += u64::from(count);
            }
        }
        Ok(totals)
    }

    async fn top_rooms(&self, n: usize) -> Result<Vec<(String, u64)>> {
        Ok(super::memory::busiest(self.room_counts().await?, n))
    }

    async fn online_users(
        &self,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        let limit = limit.clamp(1, MAX_PAGE);
        let start = match cursor {
            "" => "-".to_owned(),
            c => format!("({c}"),
        };
        let mut page: Vec<String> = self
            .conn()
            .zrangebylex_limit(ONLINE_UIDS, start, "+", 0, limit as isize + 1)
            .await
            .map_err(redis_error)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().cloned()
        } else {
            None
        };
        Ok((page, next))
    }

    async fn mark(&self) -> Result<u64> {
        self.conn().incr(MARK, 1).await.map_err(redis_error)
    }
}
