//! Who may join a room, read its history and send to it: its join rule
//! ([`JoinRule`]) — its own from the store, else the configured one by
//! name prefix — and for `members` and `app` rooms its member list.
//!
//! Rules are read often (every join) and change rarely, so each room's own
//! rule is cached for [`RULE_CACHE_FOR`]: a change reaches every logic
//! within that. Membership is never cached: a removed member must not get
//! back in from a stale answer. In an `app` room, a user who is not a
//! member is let in if the application's join hook says so; its answer
//! is cached for [`HOOK_CACHE_FOR`], so a member who sends often does not
//! cost the application a request per message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_cluster::{JoinRule, RoomRules};
use parking_lot::Mutex;

use crate::config::RoomRulesConfig;
use crate::hooks::Hooks;

/// How long a room's own rule is taken from the cache.
pub(crate) const RULE_CACHE_FOR: Duration = Duration::from_secs(1);
/// How long the join hook's answer for a user and a room is kept.
pub(crate) const HOOK_CACHE_FOR: Duration = Duration::from_secs(10);
/// Entries of each cache at most; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

/// Room rules and membership, as logic applies them.
pub(crate) struct RoomAccess {
    store: Arc<dyn RoomRules>,
    configured: RoomRulesConfig,
    /// room -> (its own rule, when read).
    cache: Mutex<HashMap<String, (Option<JoinRule>, Instant)>>,
    hooks: Arc<Hooks>,
    /// (uid, room) -> (the join hook's answer, when given).
    hook_answers: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

impl RoomAccess {
    pub(crate) fn new(
        store: Arc<dyn RoomRules>,
        configured: RoomRulesConfig,
        hooks: Arc<Hooks>,
    ) -> Self {
        Self {
            store,
            configured,
            cache: Mutex::new(HashMap::new()),
            hooks,
            hook_answers: Mutex::new(HashMap::new()),
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
            JoinRule::Members => self.store.is_member(room, uid).await,
            JoinRule::App => {
                Ok(self.store.is_member(room, uid).await? || self.hook_admits(uid, room).await)
            }
        }
    }

    /// The join hook's answer for `uid` and `room`, cached.
    async fn hook_admits(&self, uid: &str, room: &str) -> bool {
        let key = (uid.to_owned(), room.to_owned());
        let cached = self
            .hook_answers
            .lock()
            .get(&key)
            .filter(|(_, at)| at.elapsed() < HOOK_CACHE_FOR)
            .map(|(allow, _)| *allow);
        if let Some(allow) = cached {
            return allow;
        }
        let Some(allow) = self.hooks.may_join(uid, room).await else {
            // No answer: not remembered, so the next ask tries again.
            return self.hooks.join_on_failure();
        };
        let mut answers = self.hook_answers.lock();
        if answers.len() >= MAX_CACHED {
            answers.clear();
        }
        answers.insert(key, (allow, Instant::now()));
        allow
    }
}
