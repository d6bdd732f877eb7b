//! STUB: redis account store (to be implemented).
use async_trait::async_trait;
use super::{Account, Accounts};
use crate::{Error, Result};
/// redis account store.
#[derive(Debug, Default)]
pub struct RedisAccounts;
impl RedisAccounts { /// New store.
    pub fn new(_c: crate::sessions::redis::RedisConn) -> Self { Self } }
#[async_trait]
impl Accounts for RedisAccounts {
    async fn create(&self, _: &Account) -> Result<bool> { Err(Error::Closed) }
    async fn get(&self, _: &str) -> Result<Option<Account>> { Err(Error::Closed) }
}
