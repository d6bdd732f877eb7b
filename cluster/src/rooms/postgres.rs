//! Room rules and members on sharded PostgreSQL ([`PgStore`]): rows in the
//! room's bucket.

use async_trait::async_trait;

use super::{JoinRule, RoomRules};
use crate::postgres::PgStore;
use crate::{Error, Result};

fn not_yet() -> Error {
    Error::Unavailable {
        backend: "postgres",
        message: "room rules are not stored in PostgreSQL yet".into(),
    }
}

#[async_trait]
impl RoomRules for PgStore {
    async fn set_rule(&self, _room: &str, _rule: JoinRule) -> Result<()> {
        Err(not_yet())
    }
    async fn rule(&self, _room: &str) -> Result<Option<JoinRule>> {
        Err(not_yet())
    }
    async fn add_members(&self, _room: &str, _uids: &[String]) -> Result<usize> {
        Err(not_yet())
    }
    async fn remove_member(&self, _room: &str, _uid: &str) -> Result<bool> {
        Err(not_yet())
    }
    async fn is_member(&self, _room: &str, _uid: &str) -> Result<bool> {
        Err(not_yet())
    }
    async fn members(&self, _room: &str, _after: &str, _limit: usize) -> Result<Vec<String>> {
        Err(not_yet())
    }
}
