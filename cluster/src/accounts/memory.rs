//! In-process account store: the `memory://` backend.
//!
//! Accounts are created once and read on every login; a single map behind a
//! [`parking_lot::Mutex`] holds them (registrations are rare and both
//! operations are one hash lookup).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Account, Accounts};
use crate::Result;

/// In-process account store. See the module docs.
#[derive(Debug, Default)]
pub struct MemoryAccounts {
    by_uid: Mutex<HashMap<String, Account>>,
}

#[async_trait]
impl Accounts for MemoryAccounts {
    async fn create(&self, account: &Account) -> Result<bool> {
        match self.by_uid.lock().entry(account.uid.clone()) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(slot) => {
                slot.insert(account.clone());
                Ok(true)
            }
        }
    }

    async fn get(&self, uid: &str) -> Result<Option<Account>> {
        Ok(self.by_uid.lock().get(uid).cloned())
    }

    async fn set_password(&self, uid: &str, password_hash: &str) -> Result<bool> {
        Ok(match self.by_uid.lock().get_mut(uid) {
            Some(account) => {
                password_hash.clone_into(&mut account.password_hash);
                true
            }
            None => false,
        })
    }
}
