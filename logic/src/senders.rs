//! What a client's `Send` must pass before anything is stored: the sender's
//! quota, and for a message to a user, that the user exists.
//!
//! A quota per sender (not per connection: a sender may hold many) bounds
//! what one account can make the store keep. A target user must be *known*
//! to Courier: an account (a uid the connect hook vouched for is recorded
//! as one, without a password), a uid with an inbox (a backend's push, or
//! any earlier message, introduced it), or a uid connected now. Otherwise any
//! client could create inboxes for names that belong to nobody. A uid found
//! known is remembered, so only a conversation's first message pays for
//! the lookup.

use std::collections::HashSet;
use std::num::NonZeroU32;

use courier_cluster::inbox::{Inbox, Stream};
use courier_cluster::Sessions;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::accounts::AccountService;

/// Why a `Send` was refused before it was stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendRefused {
    #[error("at most {0} messages per minute from one sender")]
    OverQuota(u32),
    #[error("no such user: {0}")]
    UnknownUser(String),
    #[error(transparent)]
    Cluster(#[from] courier_cluster::Error),
}

/// Each sender's budget of stored messages, per logic node.
pub(crate) struct SendQuota {
    per_minute: u32,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl SendQuota {
    /// `per_minute` messages per sender (0: no quota).
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// Takes one message from `uid`'s budget.
    pub(crate) fn take(&self, uid: &str) -> Result<(), SendRefused> {
        match &self.limiter {
            Some(limiter) if limiter.check_key(&uid.to_owned()).is_err() => {
                metrics::counter!("courier_logic_sends_over_quota_total").increment(1);
                Err(SendRefused::OverQuota(self.per_minute))
            }
            _ => Ok(()),
        }
    }

    /// Forgets senders whose budget is full again (run periodically).
    pub(crate) fn sweep(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Uids found known, so a conversation's later messages cost no store read:
/// a uid does not become unknown again.
#[derive(Default)]
pub(crate) struct KnownUsers {
    found: Mutex<HashSet<String>>,
}

/// Uids remembered at most; past it the set starts over.
const MAX_REMEMBERED: usize = 100_000;

impl KnownUsers {
    /// Passes if `uid` is known to Courier (see the module docs). The
    /// cheapest proof first: most targets have an inbox.
    pub(crate) async fn check(
        &self,
        uid: &str,
        inbox: &dyn Inbox,
        accounts: &AccountService,
        sessions: &dyn Sessions,
    ) -> Result<(), SendRefused> {
        if self.found.lock().contains(uid) {
            return Ok(());
        }
        let heads = inbox.heads(&[Stream::User(uid)]).await?;
        let known = heads.first().is_some_and(|h| h.epoch != 0)
            || accounts.exists(uid).await?
            || !sessions.user_sessions(uid).await?.is_empty();
        if !known {
            return Err(SendRefused::UnknownUser(uid.to_owned()));
        }
        let mut found = self.found.lock();
        if found.len() >= MAX_REMEMBERED {
            found.clear();
        }
        found.insert(uid.to_owned());
        Ok(())
    }
}
