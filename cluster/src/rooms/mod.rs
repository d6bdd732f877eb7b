//! Who may be in a room: each room's join rule and its member list, in the
//! store of record.
//!
//! A room with no rule of its own follows the rules logic is configured
//! with (by name prefix, with a default); [`RoomRules::set_rule`] gives it
//! one. Members are a set of uids per room, paged in uid order. Both live
//! in the room's bucket (the bucket of its history, `r:<room>`), so they
//! move with it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

/// Most uids one call adds.
pub const MAX_MEMBERS_PER_CALL: usize = 1_000;

/// Refuses a call to add more than [`MAX_MEMBERS_PER_CALL`] uids: callers
/// check the bound first, and this keeps one call one bounded statement
/// whatever is passed. (There is no error for a bad argument;
/// `Unavailable` names what was refused.)
pub(crate) fn check_members_per_call(backend: &'static str, uids: &[String]) -> Result<()> {
    if uids.len() > MAX_MEMBERS_PER_CALL {
        return Err(Error::unavailable(
            backend,
            format!(
                "{} uids in one call to add room members, at most {MAX_MEMBERS_PER_CALL}",
                uids.len()
            ),
        ));
    }
    Ok(())
}

/// Who may join a room, read its history and send to it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JoinRule {
    /// Anyone.
    #[default]
    Open,
    /// Listed members only.
    Members,
    /// Whom the application's join hook admits (and listed members).
    App,
}

impl JoinRule {
    /// The rule's name, as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRule::Open => "open",
            JoinRule::Members => "members",
            JoinRule::App => "app",
        }
    }

    /// The rule named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "open" => Some(JoinRule::Open),
            "members" => Some(JoinRule::Members),
            "app" => Some(JoinRule::App),
            _ => None,
        }
    }
}

/// The room store. See the module docs.
#[async_trait]
pub trait RoomRules: Send + Sync + 'static {
    /// Gives `room` its own rule (replacing one it had).
    async fn set_rule(&self, room: &str, rule: JoinRule) -> Result<()>;
    /// The rule `room` was given, if any.
    async fn rule(&self, room: &str) -> Result<Option<JoinRule>>;
    /// Adds `uids` (at most [`MAX_MEMBERS_PER_CALL`]: more are refused, and
    /// none added) to `room`'s members; returns how many were not members
    /// before.
    async fn add_members(&self, room: &str, uids: &[String]) -> Result<usize>;
    /// Removes `uid` from `room`'s members; whether it was one.
    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool>;
    /// Whether `uid` is one of `room`'s members.
    async fn is_member(&self, room: &str, uid: &str) -> Result<bool>;
    /// Up to `limit` members of `room` after `after` ("" from the first),
    /// in uid order.
    async fn members(&self, room: &str, after: &str, limit: usize) -> Result<Vec<String>>;
}
