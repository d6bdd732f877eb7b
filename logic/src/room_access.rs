//! Who may join a room, read its history and send to it: its join rule
//! ([`JoinRule`]) — its own from the store, else the configured one by
//! name prefix — and for `members` and `app` rooms its member list.
//!
//! Rules are read often (every join) and change rarely, so each room's own
//! rule is cached for [`RULE_CACHE_FOR`]: a change reaches every logic
//! within that. Membership is never cached: a removed member must not get
//! back in from a stale answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_cluster::{JoinRule, RoomRules};
use parking_lot::Mutex;

use crate::config::RoomRulesConfig;

/// How long a room's own rule is taken from the cache.
pub(crate) const RULE_CACHE_FOR: Duration = Duration::from_secs(1);
/// Rooms whose rule is cached at most; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

/// Room rules and membership, as logic applies them.
pub(crate) struct RoomAccess {
    store: Arc<dyn RoomRules>,
    configured: RoomRulesConfig,
    /// room -> (its own rule, when read).
    cache: Mutex<HashMap<String, (Option<JoinRule>, Instant)>>,
}

impl RoomAccess {
    pub(crate) fn new(store: Arc<dyn RoomRules>, configured: RoomRulesConfig) -> Self {
        Self {
            store,
            configured,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store the rules and members live in.
    pub(crate) fn store(&self) -> &dyn RoomRules {
        self.store.as_ref()
    }

    /// `room`'s rule, and whether it is the room's own (not configured).
    pub(crate) async fn rule(&self, room: &str) -> courier_cluster::Result<(JoinRule, bool)> {
        let cached = self
            .cache
            .lock()
            .get(room)
            .filter(|(_, at)| at.elapsed() < RULE_CACHE_FOR)
            .map(|(rule, _)| *rule);
        let own = match cached {
            Some(own) => own,
            None => {
                let own = self.store.rule(room).await?;
                let mut cache = self.cache.lock();
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(room.to_owned(), (own, Instant::now()));
                own
            }
        };
        Ok(match own {
            Some(rule) => (rule, true),
            None => (self.configured.of(room), false),
        })
    }

    /// Gives `room` its own rule; this logic applies it at once.
    pub(crate) async fn set_rule(&self, room: &str, rule: JoinRule) -> courier_cluster::Result<()> {
        self.store.set_rule(room, rule).await?;
        self.cache.lock().remove(room);
        Ok(())
    }

    /// Whether `uid` may join `room`, read its history and send to it.
    pub(crate) async fn may_enter(&self, uid: &str, room: &str) -> courier_cluster::Result<bool> {
        match self.rule(room).await?.0 {
            JoinRule::Open => Ok(true),
            JoinRule::Members | JoinRule::App => self.store.is_member(room, uid).await,
        }
    }
}
