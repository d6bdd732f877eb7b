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
//! | `courier:{u:<uid>}:sessions` | hash | conn key -> `"<expiry_ms>\|<comet_id>"` | PEXPIRE session_ttl, renewed by add/renew |
//! | `courier:k:<key>` | string | `Session` as JSON | PX session_ttl, renewed by add/renew |
//! | `courier:{online}:uids` | zset | uid, score 0 (for paging by uid) | trimmed with the next one |
//! | `courier:{online}:expiry` | zset | uid, score = latest session expiry ms | trimmed on writes |
//! | `courier:{r:<room>}:comets` | hash | comet id -> registration time ms | until the comet leaves the room or is forgotten |
//! | `courier:{c:<comet>}:rooms` | set | rooms the comet registered | until the comet is forgotten |
//! | `courier:{comets}:reports` | hash | comet id -> report JSON (with its expiry) | trimmed on reports |
//! | `courier:{comets}:expiry` | zset | comet id, score = report expiry ms | trimmed on reports |
//!
//! # Why this shape
//!
//! Recipient resolution (`user_sessions`, `key_session`, `room_comets`) is
//! one command on one key. Writes that touch one slot are Lua scripts (see
//! `scripts`), so each is atomic even on a cluster; writes spanning slots
//! (a session's user hash, key index and online entry) are issued
//! concurrently and converge: every piece carries its own expiry, readers
//! filter by it, and whatever a crashed writer leaves behind times out.
//! A dead comet's sessions therefore vanish by themselves. Room
//! registrations do not expire: logic forgets a comet's rooms once the comet
//! has left discovery (`forget_comet`), so no late report ever drops a room
//! a live comet holds. The online counts and room counts are computed from the live
//! comet reports, one small hash read (fine for dozens of comets).
//!
//! Expiries are Unix milliseconds from the writer's clock (see `scripts`).

use std::collections::HashMap;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{CometReport, Online, Session, SessionOptions, Sessions};
use crate::{now_ms, Result};

pub(crate) mod conn;
mod scripts;

pub use conn::RedisConn;
use conn::{corrupt, redis_error};

const ONLINE_UIDS: &str = "courier:{online}:uids";
const ONLINE_EXPIRY: &str = "courier:{online}:expiry";
const REPORTS: &str = "courier:{comets}:reports";
const REPORT_EXPIRY: &str = "courier:{comets}:expiry";
/// Most uids one `online_users` call examines, whatever the limit: bounds the
/// script's run time and the reply.
const MAX_PAGE_SCAN: usize = 10_000;
/// Room registrations of one report in flight at once.
const REPORT_FANOUT: usize = 64;

fn user_key(uid: &str) -> String {
    format!("courier:{{u:{uid}}}:sessions")
}

/// Marks a connection the login policy ended (same slot as the user hash).
fn ended_key(uid: &str, key: &str) -> String {
    format!("courier:{{u:{uid}}}:ended:{key}")
}

/// A session's value in the user hash (see `scripts::SESSION_ADD`).
fn session_value(expires: i64, session: &Session) -> String {
    match session.device.as_str() {
        "" => format!("{expires}|{}", session.comet_id),
        device => format!("{expires}|{}|{device}", session.comet_id),
    }
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
    session_ttl_ms: i64,
    comet_ttl_ms: i64,
}

impl RedisSessions {
    /// A store over `conn` with these lifetimes (each at least 1 ms).
    pub fn new(conn: RedisConn, opts: SessionOptions) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        Self {
            conn,
            session_ttl_ms: ms(opts.session_ttl),
            comet_ttl_ms: ms(opts.comet_ttl),
        }
    }

    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    async fn index_key(&self, session: &Session) -> Result<()> {
        let json = serde_json::to_string(session).map_err(|e| corrupt("session", e))?;
        let ttl = u64::try_from(self.session_ttl_ms).unwrap_or(u64::MAX);
        self.conn()
            .pset_ex::<_, _, ()>(conn_key(&session.key), json, ttl)
            .await
            .map_err(redis_error)
    }

    async fn touch_online(&self, uid: &str, expires_ms: i64, now: i64) -> Result<()> {
        scripts::ONLINE_TOUCH
            .key(ONLINE_UIDS)
            .key(ONLINE_EXPIRY)
            .arg(uid)
            .arg(expires_ms)
            .arg(now)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(redis_error)
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

/// Splits a user-hash field value `"<expiry_ms>|<comet_id>[|<device>]"`.
fn parse_field(value: &str) -> Result<(i64, &str, &str)> {
    let mut fields = value.splitn(3, '|');
    let exp = fields.next().unwrap_or_default();
    let comet = fields
        .next()
        .ok_or_else(|| corrupt("session entry", format!("no `|` in {value:?}")))?;
    let device = fields.next().unwrap_or_default();
    let exp = exp.parse().map_err(|e| corrupt("session expiry", e))?;
    Ok((exp, comet, device))
}

#[async_trait]
impl Sessions for RedisSessions {
    async fn add(&self, session: &Session) -> Result<()> {
        self.revive(session).await.map(drop)
    }

    async fn revive(&self, session: &Session) -> Result<bool> {
        let now = now_ms();
        let expires = now.saturating_add(self.session_ttl_ms);
        let stored: i64 = scripts::SESSION_ADD
            .key(user_key(&session.uid))
            .key(ended_key(&session.uid, &session.key))
            .arg(&session.key)
            .arg(session_value(expires, session))
            .arg(self.session_ttl_ms)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if stored == 0 {
            return Ok(false);
        }
        futures::try_join!(
            self.index_key(session),
            self.touch_online(&session.uid, expires, now)
        )?;
        Ok(true)
    }

    async fn end(&self, session: &Session) -> Result<()> {
        // The marker first: a revive that runs after the removal sees it.
        let ttl = u64::try_from(self.session_ttl_ms).unwrap_or(u64::MAX);
        self.conn()
            .pset_ex::<_, _, ()>(ended_key(&session.uid, &session.key), 1, ttl)
            .await
            .map_err(redis_error)?;
        self.remove(session).await
    }

    async fn renew(&self, session: &Session) -> Result<bool> {
        let now = now_ms();
        let expires = now.saturating_add(self.session_ttl_ms);
        let renewed: i64 = scripts::SESSION_RENEW
            .key(user_key(&session.uid))
            .arg(&session.key)
            .arg(&session.comet_id)
            .arg(expires)
            .arg(self.session_ttl_ms)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if renewed == 0 {
            return Ok(false);
        }
        futures::try_join!(
            self.index_key(session),
            self.touch_online(&session.uid, expires, now)
        )?;
        Ok(true)
    }

    async fn remove(&self, session: &Session) -> Result<()> {
        let now = now_ms();
        let (removed, removed_exp, remaining): (i64, i64, i64) = scripts::SESSION_REMOVE
            .key(user_key(&session.uid))
            .arg(&session.key)
            .arg(&session.comet_id)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if removed == 0 {
            return Ok(());
        }
        let unindex = async {
            self.conn()
                .del::<_, ()>(conn_key(&session.key))
                .await
                .map_err(redis_error)
        };
        let settle = async {
            scripts::ONLINE_SETTLE
                .key(ONLINE_UIDS)
                .key(ONLINE_EXPIRY)
                .arg(&session.uid)
                .arg(removed_exp)
                .arg(remaining)
                .arg(now)
                .invoke_async::<()>(&mut self.conn())
                .await
                .map_err(redis_error)
        };
        futures::try_join!(unindex, settle)?;
        Ok(())
    }

    async fn user_sessions(&self, uid: &str) -> Result<Vec<Session>> {
        let now = now_ms();
        let raw: HashMap<String, String> = self
            .conn()
            .hgetall(user_key(uid))
            .await
            .map_err(redis_error)?;
        let mut sessions = Vec::with_capacity(raw.len());
        for (key, value) in raw {
            let (expires, comet, device) = parse_field(&value)?;
            if expires > now {
                sessions.push(Session {
                    uid: uid.to_owned(),
                    comet_id: comet.to_owned(),
                    key,
                    device: device.to_owned(),
                });
            }
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

    async fn online(&self) -> Result<Online> {
        let now = now_ms();
        let mut conn = self.conn();
        let users = async {
            conn.zcount::<_, _, _, u64>(ONLINE_EXPIRY, format!("({now}"), "+inf")
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

    async fn top_rooms(&self, n: usize) -> Result<Vec<(String, u64)>> {
        let mut totals: HashMap<String, u64> = HashMap::new();
        for (_, report) in self.live_reports().await? {
            for (room, count) in report.rooms {
                *totals.entry(room).or_default() += u64::from(count);
            }
        }
        Ok(super::memory::busiest(totals, n))
    }

    async fn online_users(
        &self,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        let limit = limit.clamp(1, MAX_PAGE_SCAN - 1);
        let (mut page, resume): (Vec<String>, String) = scripts::ONLINE_PAGE
            .key(ONLINE_UIDS)
            .key(ONLINE_EXPIRY)
            .arg(cursor)
            .arg(limit + 1)
            .arg(now_ms())
            .arg(MAX_PAGE_SCAN)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if page.len() > limit {
            page.truncate(limit);
            let next = page.last().cloned();
            return Ok((page, next));
        }
        // Out of scan budget: everything between the page and `resume` was
        // offline, so the next page starts after `resume`.
        let next = (!resume.is_empty()).then_some(resume);
        Ok((page, next))
    }
}
