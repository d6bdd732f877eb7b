//! The session store: who is connected where.
//!
//! Only logic writes it. It answers the questions recipient resolution asks
//! (user -> keys -> comet, key -> comet, room -> comets holding members) and
//! the online counts of the HTTP API.
//!
//! Nothing here is renewed per connection: an idle connection costs the
//! store nothing. A session lives until its connection closes
//! ([`Sessions::remove`]), a newer login ends it ([`Sessions::end`]), or its
//! comet is forgotten ([`Sessions::forget_comet`]): logic forgets a comet
//! that has been gone from discovery for longer than a lease, and one that
//! starts again under the same id. Room registrations live the same way: a
//! comet stays in a room's index until it reports the room left or is
//! forgotten, so a late or failed report can never drop a room a live comet
//! holds. Only the comets' load reports (the online counts) expire, renewed
//! by each comet's periodic report.
//!
//! A session *ended* by the login policy leaves a marker for
//! [`SessionOptions::ended_ttl`], so a session check still in flight from
//! the replaced connection cannot bring it back ([`Sessions::revive`]).
//!
//! The store is a cache of what the comets know: if it loses writes (a
//! Redis flush, a restart without persistence, a failover to a replica
//! that lagged), the comets report their connections and rooms again.
//! [`Sessions::mark`] is how logic notices: a counter every logic advances
//! every second, which goes back only when writes were lost.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// One connection of a user on a comet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session {
    pub uid: String,
    pub key: String,
    pub comet_id: String,
    /// The client's device id (empty: none given). The store keeps what
    /// `add` recorded; other calls name the connection by uid, key and
    /// comet alone.
    #[serde(default)]
    pub device: String,
}

impl Session {
    /// Whether both name the same connection (device aside).
    pub fn same_connection(&self, other: &Session) -> bool {
        self.key == other.key && self.uid == other.uid && self.comet_id == other.comet_id
    }
}

/// A comet's periodic load report, or one part of it.
///
/// A comet with many rooms reports them in `parts` parts (every call stays
/// far below gRPC's message limit). Parts are stored and expire one by one;
/// part 0 carries the connection count and says how many parts the report
/// has now, so a part left over from a larger report is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometReport {
    pub connections: u32,
    /// room -> connections on this comet (this part's share of the rooms)
    pub rooms: HashMap<String, u32>,
    /// Which part this is, from 0.
    pub part: u32,
    /// How many parts the report has (at least 1).
    pub parts: u32,
}

impl Default for CometReport {
    fn default() -> Self {
        Self {
            connections: 0,
            rooms: HashMap::new(),
            part: 0,
            parts: 1,
        }
    }
}

/// The live parts of every comet's report, without parts left over from a
/// report that had more: `(comet, report part)` in, the current ones out.
pub(crate) fn current_parts<'a, I>(live: I) -> Vec<(&'a str, &'a CometReport)>
where
    I: IntoIterator<Item = (&'a str, &'a CometReport)>,
{
    let live: Vec<_> = live.into_iter().collect();
    let parts: HashMap<&str, u32> = live
        .iter()
        .filter(|(_, r)| r.part == 0)
        .map(|(comet, r)| (*comet, r.parts.max(1)))
        .collect();
    live.into_iter()
        .filter(|(comet, r)| parts.get(comet).is_some_and(|n| r.part < *n))
        .collect()
}

/// Cluster-wide online counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Online {
    /// Connections, summed over live comet reports.
    pub connections: u64,
    /// Distinct users with at least one live session.
    pub users: u64,
    /// (comet id, connections), sorted by id.
    pub comets: Vec<(String, u32)>,
}

/// Lifetimes of session-store entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// How long an ended session cannot be revived: longer than a comet's
    /// session check interval, so the replaced connection's next check
    /// finds the marker (and the comet closes it).
    pub ended_ttl: Duration,
    /// How long a comet's report (its counts) lives without the next
    /// report.
    pub comet_ttl: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            ended_ttl: Duration::from_secs(3600),
            comet_ttl: Duration::from_secs(20),
        }
    }
}

/// The session store. See the module docs.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Records a connection (or records it again).
    async fn add(&self, session: &Session) -> Result<()>;
    /// Whether this connection is recorded, on this comet. `false` if it
    /// was removed, ended or forgotten, or never existed; the caller may
    /// then `revive` it.
    async fn check(&self, session: &Session) -> Result<bool>;
    /// Forgets a connection. Removing an absent session is not an error.
    async fn remove(&self, session: &Session) -> Result<()>;
    /// Forgets a connection for good: for `ended_ttl` it cannot be revived
    /// (a newer login replaced it).
    async fn end(&self, session: &Session) -> Result<()>;
    /// Adds a live connection whose session is gone, unless it was ended;
    /// returns whether it is back.
    async fn revive(&self, session: &Session) -> Result<bool>;
    /// Records `session` only if its user has no other live session, other
    /// than this key's and (when `session.device` is set) this device's,
    /// and it was not ended; returns whether it was recorded. Atomic: of
    /// two such calls for one user at once, only one gets in (the
    /// `reject_new` login policy).
    async fn add_alone(&self, session: &Session) -> Result<bool>;
    /// Live connections of one user, in no particular order.
    async fn user_sessions(&self, uid: &str) -> Result<Vec<Session>>;
    /// The live session with this connection key.
    async fn key_session(&self, key: &str) -> Result<Option<Session>>;

    /// A comet now holds at least one member of `room`.
    async fn add_room_comet(&self, room: &str, comet_id: &str) -> Result<()>;
    /// A comet no longer holds any member of `room`.
    async fn remove_room_comet(&self, room: &str, comet_id: &str) -> Result<()>;
    /// Comets holding members of `room`, sorted.
    async fn room_comets(&self, room: &str) -> Result<Vec<String>>;

    /// Stores a comet's load report (or one part of it, see
    /// [`CometReport`]) and registers every room in it as held by the comet
    /// (healing any lost change).
    async fn report_comet(&self, comet_id: &str, report: &CometReport) -> Result<()>;
    /// Drops every session, room registration and report of a comet that
    /// left the cluster (or started again under the same id). Forgetting an
    /// unknown comet is not an error.
    async fn forget_comet(&self, comet_id: &str) -> Result<()>;
    /// Comets that have reported and not been forgotten since, sorted: a
    /// logic that starts forgets those no longer in discovery.
    async fn known_comets(&self) -> Result<Vec<String>>;
    /// Cluster-wide online counts.
    async fn online(&self) -> Result<Online>;
    /// Connections in one room, summed over live comet reports.
    async fn room_online(&self, room: &str) -> Result<u64>;
    /// Connections in every room held anywhere, summed over live comet
    /// reports: one read of them all (logic serves head counts from this,
    /// at most once a second, rather than reading every report per ask).
    async fn room_counts(&self) -> Result<HashMap<String, u64>>;
    /// The `n` rooms with the most connections, busiest first.
    async fn top_rooms(&self, n: usize) -> Result<Vec<(String, u64)>>;
    /// Online users, sorted by uid, starting after `cursor` (exclusive; ""
    /// for the first page). Returns the page and the cursor of the next page.
    async fn online_users(
        &self,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)>;

    /// Advances the store's loss-detection counter and returns its new
    /// value. A value no higher than one returned before means the store
    /// lost writes in between (it came back empty or older).
    async fn mark(&self) -> Result<u64>;
}
