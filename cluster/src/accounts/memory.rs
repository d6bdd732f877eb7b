//! STUB: memory account store (to be implemented).
use async_trait::async_trait;
use super::{Account, Accounts};
use crate::{Error, Result};
/// memory account store.
#[derive(Debug, Default)]
pub struct MemoryAccounts;

#[async_trait]
impl Accounts for MemoryAccounts {
    async fn create(&self, _: &Account) -> Result<bool> { Err(Error::Closed) }
    async fn get(&self, _: &str) -> Result<Option<Account>> { Err(Error::Closed) }
}
