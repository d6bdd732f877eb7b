//! In-process session store: the `memory://` backend of `courier up` and of
//! tests.
//!
//! Two small tables, each behind its own [`parking_lot::Mutex`]: the session
//! table (written on connect and disconnect) and the comet table (room
//! registrations, which do not expire, and load reports, written a few
//! times per comet per `comet_ttl`). Every critical section is a handful of
//! hash-map operations, so one lock per table is cheaper than the
//! bookkeeping sharding would need for the cross-index reads
//! (`key -> session`, `uid -> keys`, `comet -> keys`).
//!
//! Sessions do not expire (see the trait docs). What does is measured with
//! [`tokio::time::Instant`], so tests can drive it with paused time: ended
//! markers, purged by a sweep at most once per `ended_ttl`, and comet
//! reports, invisible once expired and purged the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{CometReport, Online, Session, SessionOptions, Sessions};
use crate::Result;

/// In-process session store. See the module docs.
#[derive(Debug)]
pub struct MemorySessions {
    opts: SessionOptions,
    sessions: Mutex<SessionTable>,
    comets: Mutex<CometTable>,
    /// [`Sessions::mark`]: this store never loses writes.
    mark: std::sync::atomic::AtomicU64,
}

impl MemorySessions {
    /// A new, empty store with these lifetimes.
    pub fn new(opts: SessionOptions) -> Self {
        let now = Instant::now();
        Self {
            opts,
            sessions: Mutex::new(SessionTable::new(now, opts.ended_ttl)),
            mark: std::sync::atomic::AtomicU64::new(0),
            comets: Mutex::new(CometTable::new(now, opts.comet_ttl)),
        }
    }
}

/// Sessions by key, plus the `uid -> keys` and `comet -> keys` indexes. The
/// uid index is a `BTreeMap` so `online_users` can page in uid order from a
/// cursor.
#[derive(Debug)]
struct SessionTable {
    by_key: HashMap<String, Session>,
    by_uid: BTreeMap<String, Vec<String>>,
    by_comet: HashMap<String, HashSet<String>>,
    /// Keys of ended sessions, until when they cannot be revived.
    ended: HashMap<String, Instant>,
    next_sweep: Instant,
    sweep_every: Duration,
}

impl SessionTable {
    fn new(now: Instant, ended_ttl: Duration) -> Self {
        Self {
            by_key: HashMap::new(),
            by_uid: BTreeMap::new(),
            by_comet: HashMap::new(),
            ended: HashMap::new(),
            next_sweep: now + ended_ttl,
            sweep_every: ended_ttl,
        }
    }

    fn insert(&mut self, session: &Session) {
        if let Some(old) = self.by_key.insert(session.key.clone(), session.clone()) {
            if old.uid == session.uid && old.comet_id == session.comet_id {
                // Same connection: the indexes already list it.
                return;
            }
            self.unindex(&old);
        }
        self.by_uid
            .entry(session.uid.clone())
            .or_default()
            .push(session.key.clone());
        self.by_comet
            .entry(session.comet_id.clone())
            .or_default()
            .insert(session.key.clone());
    }

    fn unindex(&mut self, session: &Session) {
        if let Some(keys) = self.by_uid.get_mut(&session.uid) {
            keys.retain(|k| *k != session.key);
            if keys.is_empty() {
                self.by_uid.remove(&session.uid);
            }
        }
        if let Some(keys) = self.by_comet.get_mut(&session.comet_id) {
            keys.remove(&session.key);
            if keys.is_empty() {
                self.by_comet.remove(&session.comet_id);
            }
        }
    }

    fn remove(&mut self, session: &Session) {
        // Only the exact connection: a key since re-added by another user or
        // comet is somebody else's session now.
        let matches = self
            .by_key
            .get(&session.key)
            .is_some_and(|s| s.same_connection(session));
        if matches {
            self.by_key.remove(&session.key);
            self.unindex(session);
        }
    }

    fn forget_comet(&mut self, comet_id: &str) {
        for key in self.by_comet.remove(comet_id).unwrap_or_default() {
            if let Some(session) = self.by_key.remove(&key) {
                self.unindex(&session);
            }
        }
    }

    fn maybe_sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.sweep_every;
        self.ended.retain(|_, until| *until > now);
    }
}

/// Room registrations and load reports of the comets.
#[derive(Debug)]
struct CometTable {
    /// room -> comets holding members (no expiry: see the trait docs)
    rooms: HashMap<String, HashSet<String>>,
    /// comet -> its rooms, to forget a comet that left
    comet_rooms: HashMap<String, HashSet<String>>,
    /// (comet, part) -> (report part, expiry)
    reports: HashMap<(String, u32), (CometReport, Instant)>,
    /// Comets that reported since they were last forgotten.
    known: HashSet<String>,
    next_sweep: Instant,
    sweep_every: Duration,
}

impl CometTable {
    fn new(now: Instant, ttl: Duration) -> Self {
        Self {
            rooms: HashMap::new(),
            comet_rooms: HashMap::new(),
            reports: HashMap::new(),
            known: HashSet::new(),
            next_sweep: now + ttl,
            sweep_every: ttl,
        }
    }

    fn register(&mut self, room: &str, comet_id: &str) {
        if !self.rooms.get(room).is_some_and(|c| c.contains(comet_id)) {
            self.rooms
                .entry(room.to_owned())
                .or_default()
                .insert(comet_id.to_owned());
            self.comet_rooms
                .entry(comet_id.to_owned())
                .or_default()
                .insert(room.to_owned());
        }
    }

    fn unregister(&mut self, room: &str, comet_id: &str) {
        if let Some(comets) = self.rooms.get_mut(room) {
            comets.remove(comet_id);
            if comets.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(rooms) = self.comet_rooms.get_mut(comet_id) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.comet_rooms.remove(comet_id);
            }
        }
    }

    /// The current parts of the live reports (see [`super::current_parts`]).
    fn live_reports(&self, now: Instant) -> Vec<(&str, &CometReport)> {
        super::current_parts(
            self.reports
                .iter()
                .filter(move |(_, (_, expires))| *expires > now)
                .map(|((id, _), (report, _))| (id.as_str(), report)),
        )
    }

    fn maybe_sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.sweep_every;
        self.reports.retain(|_, (_, expires)| *expires > now);
    }
}

#[async_trait]
impl Sessions for MemorySessions {
    async fn add(&self, session: &Session) -> Result<()> {
        self.sessions.lock().insert(session);
        Ok(())
    }

    async fn check(&self, session: &Session) -> Result<bool> {
        let table = self.sessions.lock();
        Ok(table
            .by_key
            .get(&session.key)
            .is_some_and(|s| s.same_connection(session)))
    }

    async fn remove(&self, session: &Session) -> Result<()> {
        self.sessions.lock().remove(session);
        Ok(())
    }

    async fn end(&self, session: &Session) -> Result<()> {
        let now = Instant::now();
        let mut table = self.sessions.lock();
        table.maybe_sweep(now);
        table
            .ended
            .insert(session.key.clone(), now + self.opts.ended_ttl);
        table.remove(session);
        Ok(())
    }

    async fn revive(&self, session: &Session) -> Result<bool> {
        let now = Instant::now();
        let mut table = self.sessions.lock();
        table.maybe_sweep(now);
        if table
            .ended
            .get(&session.key)
            .is_some_and(|until| *until > now)
        {
            return Ok(false);
        }
        table.insert(session);
        Ok(true)
    }

    async fn add_alone(&self, session: &Session) -> Result<bool> {
        let now = Instant::now();
        let mut table = self.sessions.lock();
        table.maybe_sweep(now);
        let ended = table
            .ended
            .get(&session.key)
            .is_some_and(|until| *until > now);
        let someone_else = table.by_uid.get(&session.uid).is_some_and(|keys| {
            keys.iter()
                .filter_map(|k| table.by_key.get(k))
                .any(|other| !same_client(other, session))
        });
        if ended || someone_else {
            return Ok(false);
        }
        table.insert(session);
        Ok(true)
    }

    async fn user_sessions(&self, uid: &str) -> Result<Vec<Session>> {
        let table = self.sessions.lock();
        let Some(keys) = table.by_uid.get(uid) else {
            return Ok(Vec::new());
        };
        Ok(keys
            .iter()
            .filter_map(|k| table.by_key.get(k))
            .cloned()
            .collect())
    }

    async fn key_session(&self, key: &str) -> Result<Option<Session>> {
        Ok(self.sessions.lock().by_key.get(key).cloned())
    }

    async fn add_room_comet(&self, room: &str, comet_id: &str) -> Result<()> {
        self.comets.lock().register(room, comet_id);
        Ok(())
    }

    async fn remove_room_comet(&self, room: &str, comet_id: &str) -> Result<()> {
        self.comets.lock().unregister(room, comet_id);
        Ok(())
    }

    async fn room_comets(&self, room: &str) -> Result<Vec<String>> {
        let table = self.comets.lock();
        let mut comets: Vec<String> = table
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        drop(table);
        comets.sort_unstable();
        Ok(comets)
    }

    async fn report_comet(&self, comet_id: &str, report: &CometReport) -> Result<()> {
        let now = Instant::now();
        let expires = now + self.opts.comet_ttl;
        let mut table = self.comets.lock();
        table.maybe_sweep(now);
        for room in report.rooms.keys() {
            table.register(room, comet_id);
        }
        table.reports.insert(
            (comet_id.to_owned(), report.part),
            (report.clone(), expires),
        );
        if !table.known.contains(comet_id) {
            table.known.insert(comet_id.to_owned());
        }
        Ok(())
    }

    async fn forget_comet(&self, comet_id: &str) -> Result<()> {
        let mut table = self.comets.lock();
        let rooms = table.comet_rooms.remove(comet_id).unwrap_or_default();
        for room in rooms {
            table.unregister(&room, comet_id);
        }
        table.reports.retain(|(id, _), _| id != comet_id);
        table.known.remove(comet_id);
        drop(table);
        self.sessions.lock().forget_comet(comet_id);
        Ok(())
    }

    async fn known_comets(&self) -> Result<Vec<String>> {
        let mut known: Vec<String> = self.comets.lock().known.iter().cloned().collect();
        known.sort_unstable();
        Ok(known)
    }

    async fn online(&self) -> Result<Online> {
        let now = Instant::now();
        let mut comets: Vec<(String, u32)> = {
            let table = self.comets.lock();
            table
                .live_reports(now)
                .into_iter()
                .filter(|(_, r)| r.part == 0)
                .map(|(id, r)| (id.to_owned(), r.connections))
                .collect()
        };
        comets.sort_unstable();
        let connections = comets.iter().map(|(_, c)| u64::from(*c)).sum();
        let users = self.sessions.lock().by_uid.len() as u64;
        Ok(Online {
            connections,
            users,
            comets,
        })
    }

    async fn room_online(&self, room: &str) -> Result<u64> {
        let now = Instant::now();
        let table = self.comets.lock();
        Ok(table
            .live_reports(now)
            .into_iter()
            .filter_map(|(_, r)| r.rooms.get(room))
            .map(|c| u64::from(*c))
            .sum())
    }

    async fn room_counts(&self) -> Result<HashMap<String, u64>> {
        let now = Instant::now();
        let mut totals: HashMap<String, u64> = HashMap::new();
        let table = self.comets.lock();
        for (_, report) in table.live_reports(now) {
            for (room, count) in &report.rooms {
                *totals.entry(room.clone()).or_default() += u64::from(*count);
            }
        }
        Ok(totals)
    }

    async fn top_rooms(&self, n: usize) -> Result<Vec<(String, u64)>> {
        Ok(busiest(self.room_counts().await?, n))
    }

    async fn online_users(
        &self,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        let limit = limit.max(1);
        let table = self.sessions.lock();
        let mut live = table
            .by_uid
            .range::<str, _>((
                std::ops::Bound::Excluded(cursor),
                std::ops::Bound::Unbounded,
            ))
            .map(|(uid, _)| uid);
        let page: Vec<String> = live.by_ref().take(limit).cloned().collect();
        let more = live.next().is_some();
        drop(table);
        let next = if more { page.last().cloned() } else { None };
        Ok((page, next))
    }

    async fn mark(&self) -> Result<u64> {
        Ok(self.mark.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1)
    }
}

/// The `n` rooms with the most connections, busiest first, ties by name;
/// rooms with no connections are left out. Shared with the Redis store,
/// which sums the same per-comet reports.
pub(crate) fn busiest(totals: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut rooms: Vec<(String, u64)> = totals.into_iter().filter(|(_, c)| *c > 0).collect();
    rooms.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rooms.truncate(n);
    rooms
}

/// Whether `other` is `session`'s own connection or another of its device.
fn same_client(other: &Session, session: &Session) -> bool {
    other.key == session.key || (!session.device.is_empty() && other.device == session.device)
}
