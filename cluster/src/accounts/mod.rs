//! User accounts: uid and argon2 password hash. Logic registers and logs in
//! against it; hashing happens in logic, the store only keeps the hash.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub uid: String,
    /// PHC string of the argon2 hash.
    pub password_hash: String,
    pub created_at_ms: i64,
}

/// The account store.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Creates the account. `false` if the uid is already taken (the stored
    /// account is left as it was).
    async fn create(&self, account: &Account) -> Result<bool>;
    /// The account with this uid.
    async fn get(&self, uid: &str) -> Result<Option<Account>>;
    /// Replaces the password hash of `uid`'s account; `false` if there is
    /// no such account.
    async fn set_password(&self, uid: &str, password_hash: &str) -> Result<bool>;
}
