//! Registration and login: username and password rules, argon2 hashing.
//!
//! Hashing is deliberately slow and memory-hungry (argon2id, ~19 MiB per
//! hash), so it runs on the blocking pool and at most a few hashes run at
//! once (a semaphore): a burst of logins queues instead of exhausting
//! memory. The queue itself is bounded too: past `queue` waiting requests a
//! login is refused at once ([`AccountError::Busy`], a 503 with
//! `Retry-After`) instead of holding a connection and a task for as long as
//! the queue takes to drain. An unknown user still costs one verification against a dummy
//! hash, so response time does not tell which usernames exist.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use courier_cluster::{Account, Accounts};
use rand::RngCore;
use tokio::sync::Semaphore;

/// Longest username: a username is the uid, so the protocol's uid limit.
pub(crate) const MAX_USERNAME: usize = courier_proto::names::MAX_UID_LEN;
/// Shortest password, in bytes.
pub(crate) const MIN_PASSWORD: usize = 6;
/// Longest password, in bytes (bounds hashing work per request).
pub(crate) const MAX_PASSWORD: usize = 128;

/// Why registration or login failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    #[error("username must be 1-{MAX_USERNAME} bytes of letters, digits, '_', '.' or '-'")]
    InvalidUsername,
    #[error("password must be {MIN_PASSWORD}-{MAX_PASSWORD} bytes")]
    InvalidPassword,
    #[error("username is already taken")]
    Taken,
    #[error("wrong username or password")]
    BadCredentials,
    #[error(transparent)]
    Cluster(#[from] courier_cluster::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("too many logins at once; retry shortly")]
    Busy,
}

/// Whether `name` is a valid username (and so uid).
pub(crate) fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_password(password: &str) -> bool {
    (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len())
}

/// The password hash of an account the connect hook introduced: no PHC
/// string, so no password ever matches it.
const NO_PASSWORD: &str = "!";

/// The account store plus a bound on concurrent hashing.
#[derive(Clone)]
pub(crate) struct AccountService {
    store: Arc<dyn Accounts>,
    /// One permit per hash that may run at once.
    hashing: Arc<Semaphore>,
    /// One permit per request that may run or wait for a hash.
    queue: Arc<Semaphore>,
}

impl AccountService {
    /// Accounts in `store`, hashing at most one password per CPU at a time
    /// with at most `queue` more requests waiting.
    pub(crate) fn new(store: Arc<dyn Accounts>, queue: usize) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::with_hashers(store, cpus, queue)
    }

    fn with_hashers(store: Arc<dyn Accounts>, hashers: usize, queue: usize) -> Self {
        Self {
            store,
            hashing: Arc::new(Semaphore::new(hashers)),
            queue: Arc::new(Semaphore::new(hashers + queue)),
        }
    }

    /// Creates an account and returns its uid (the username).
    pub(crate) async fn register(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, AccountError> {
        if !valid_username(username) {
            return Err(AccountError::InvalidUsername);
        }
        if !valid_password(password) {
            return Err(AccountError::InvalidPassword);
        }
        let password = password.to_owned();
        let password_hash = self.blocking(move || hash(&password)).await??;
        let account = Account {
            uid: username.to_owned(),
            password_hash,
            created_at_ms: courier_cluster::now_ms(),
        };
        if self.store.create(&account).await? {
            Ok(account.uid)
        } else {
            Err(AccountError::Taken)
        }
    }

    /// Checks a username and password and returns the uid. Every failure to
    /// match is the same [`AccountError::BadCredentials`].
    pub(crate) async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, AccountError> {
        if !valid_username(username) || password.len() > MAX_PASSWORD {
            return Err(AccountError::BadCredentials);
        }
        let account = self.store.get(username).await?;
        // A uid the connect hook introduced has no password to match.
        let account = account.filter(|a| a.password_hash != NO_PASSWORD);
        let stored = account.as_ref().map(|a| a.password_hash.clone());
        let password = password.to_owned();
        let matches = self
            .blocking(move || match stored {
                Some(phc) => verify(&password, &phc),
                None => {
                    // Same work as a real check, so timing reveals nothing.
                    let _ = verify(&password, dummy_hash());
                    false
                }
            })
            .await?;
        match account {
            Some(a) if matches => Ok(a.uid),
            _ => Err(AccountError::BadCredentials),
        }
    }

    /// The hash of `new`, once `old` is shown to be `uid`'s current
    /// password (any failure to match is [`AccountError::BadCredentials`]);
    /// [`AccountService::store_password`] puts it in place.
    pub(crate) async fn new_password_hash(
        &self,
        uid: &str,
        old: &str,
        new: &str,
    ) -> Result<String, AccountError> {
        if !valid_password(new) {
            return Err(AccountError::InvalidPassword);
        }
        self.login(uid, old).await?;
        let new = new.to_owned();
        self.blocking(move || hash(&new)).await?
    }

    /// Replaces `uid`'s password hash.
    pub(crate) async fn store_password(
        &self,
        uid: &str,
        password_hash: &str,
    ) -> Result<(), AccountError> {
        if self.store.set_password(uid, password_hash).await? {
            Ok(())
        } else {
            Err(AccountError::BadCredentials)
        }
    }

    /// Records `uid` (vouched for by the connect hook) as an account with
    /// no password: it is known to Courier (others may send to it) but
    /// cannot log in with a password. `false` if the uid belongs to an
    /// account registered with a password: the connect hook must not hand
    /// its tokens to someone else (names are one namespace).
    pub(crate) async fn introduce(&self, uid: &str) -> courier_cluster::Result<bool> {
        let account = Account {
            uid: uid.to_owned(),
            password_hash: NO_PASSWORD.to_owned(),
            created_at_ms: courier_cluster::now_ms(),
        };
        if self.store.create(&account).await? {
            return Ok(true);
        }
        let existing = self.store.get(uid).await?;
        Ok(existing.is_some_and(|a| a.password_hash == NO_PASSWORD))
    }

    /// Whether an account has this uid.
    pub(crate) async fn exists(&self, uid: &str) -> courier_cluster::Result<bool> {
        Ok(self.store.get(uid).await?.is_some())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountError> {
        let _place = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| AccountError::Busy)?;
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| AccountError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AccountError::Hashing(e.to_string()))
    }
}

fn hash(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hashing(e.to_string()))
}

fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash does not parse");
            false
        }
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("courier-dummy-password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert!(valid_username("alice_1.b-2"));
        assert!(valid_username(&"a".repeat(64)));
        assert!(!valid_username(""));
        assert!(!valid_username(&"a".repeat(65)));
        assert!(!valid_username("al ice"));
        assert!(!valid_username("ålice"));
        assert!(!valid_username("a/b"));
    }

    #[tokio::test]
    async fn a_full_hashing_queue_refuses_instead_of_waiting() {
        let store: Arc<dyn Accounts> =
            Arc::new(courier_cluster::accounts::memory::MemoryAccounts::default());
        let service = AccountService::with_hashers(store, 1, 1);
        // Hold the one hasher and the one queue place.
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let running = {
            let service = service.clone();
            tokio::spawn(async move { service.blocking(move || held.blocking_recv()).await })
        };
        let waiting = {
            let service = service.clone();
            tokio::spawn(async move { service.blocking(|| ()).await })
        };
        // Both places taken: the next request is refused, not queued.
        courier_testkit::wait::eventually("both places taken", || {
            service.queue.available_permits() == 0
        })
        .await;
        assert!(matches!(
            service.login("alice", "secret-pw").await,
            Err(AccountError::Busy)
        ));
        release.send(()).unwrap();
        assert!(running.await.unwrap().is_ok());
        assert!(waiting.await.unwrap().is_ok());
        // With the queue drained, logins are served again.
        assert!(matches!(
            service.login("alice", "secret-pw").await,
            Err(AccountError::BadCredentials)
        ));
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
        assert!(!verify("correct horse", "not a phc string"));
        assert_ne!(hash("correct horse").unwrap(), phc, "salt is random");
    }
}
