//! Redis account store.
//!
//! One key per account, `courier:account:<uid>`, holding the [`Account`] as
//! JSON with no TTL. Registration is a single `SET ... NX`, so two concurrent
//! registrations of one uid cannot both win, on a single server or a
//! cluster alike (one key, one slot).

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{Account, Accounts};
use crate::sessions::redis::conn::{corrupt, redis_error};
use crate::sessions::redis::RedisConn;
use crate::Result;

fn account_key(uid: &str) -> String {
    format!("courier:account:{uid}")
}

/// Redis account store. See the module docs.
#[derive(Debug, Clone)]
pub struct RedisAccounts {
    conn: RedisConn,
}

impl RedisAccounts {
    /// A store over `conn` (shared with the session store).
    pub fn new(conn: RedisConn) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl Accounts for RedisAccounts {
    async fn create(&self, account: &Account) -> Result<bool> {
        let json = serde_json::to_string(account).map_err(|e| corrupt("account", e))?;
        let created: Option<String> = redis::cmd("SET")
            .arg(account_key(&account.uid))
            .arg(json)
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(created.is_some())
    }

    async fn get(&self, uid: &str) -> Result<Option<Account>> {
        let json: Option<String> = self
            .conn
            .clone()
            .get(account_key(uid))
            .await
            .map_err(redis_error)?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("account", e)))
            .transpose()
    }
}
