//! Revoking tokens, and the revocations in force for the routes that take
//! a user's token ([`courier_runtime::revoked`]).
//!
//! A revocation is a record in discovery that every comet and logic
//! watches: comets refuse the token at `Auth` and `Refresh` and close the
//! connections that hold it as soon as the record reaches them, so logic
//! does not have to find them. A logout revokes its own token for as long
//! as that token could be used; a password change or an operator revokes
//! every token of the user issued until then, for [`REVOKE_ALL_FOR`] (or
//! the configured token lifetime, if longer): a token minted by a backend
//! that lives longer than that outlives the revocation.

use std::sync::{Arc, Weak};
use std::time::Duration;

use courier_cluster::Discovery;
use courier_runtime::revoked::{token_record, user_record, Revoked};
use courier_runtime::Claims;
use tokio::sync::watch;

/// How long a revocation of every token of a user is kept, at least.
pub(crate) const REVOKE_ALL_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a token could not be revoked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RevokeError {
    /// A token without an id (minted by a backend) cannot be revoked alone.
    #[error(
        "this token has no id (jti), so it cannot be revoked alone; revoke every token of the user"
    )]
    NoId,
    #[error(transparent)]
    Cluster(#[from] courier_cluster::Error),
}

/// The revocations in force, kept current from discovery, and the way to
/// add one.
pub(crate) struct Revocations {
    discovery: Arc<dyn Discovery>,
    in_force: Arc<watch::Sender<Arc<Revoked>>>,
    /// How long a revocation of every token is kept.
    revoke_all_for: Duration,
}

impl Revocations {
    /// Starts following discovery's revocation records. The task ends
    /// with the records' watch or once this is dropped.
    pub(crate) async fn follow(
        discovery: Arc<dyn Discovery>,
        token_ttl: Duration,
    ) -> courier_cluster::Result<Self> {
        let mut records = discovery.watch_revoked().await?;
        let first = Revoked::from_records(&records.borrow_and_update());
        let in_force = Arc::new(watch::Sender::new(Arc::new(first)));
        let weak: Weak<watch::Sender<Arc<Revoked>>> = Arc::downgrade(&in_force);
        tokio::spawn(async move {
            while records.changed().await.is_ok() {
                let Some(in_force) = weak.upgrade() else {
                    break;
                };
                let now = Revoked::from_records(&records.borrow_and_update());
                in_force.send_replace(Arc::new(now));
            }
        });
        Ok(Self {
            discovery,
            in_force,
            revoke_all_for: token_ttl.max(REVOKE_ALL_FOR),
        })
    }

    /// Whether the token `claims` are of is revoked.
    pub(crate) fn revokes(&self, claims: &Claims) -> bool {
        self.in_force.borrow().revokes(claims)
    }

    /// Revokes this one token (a logout) until it expires.
    pub(crate) async fn revoke_token(&self, claims: &Claims) -> Result<(), RevokeError> {
        let jti = claims.jti.as_deref().ok_or(RevokeError::NoId)?;
        let now = courier_cluster::now_ms() / 1000;
        let left = u64::try_from(now)
            .ok()
            .map_or(1, |now| claims.exp.saturating_sub(now).max(1));
        self.discovery
            .revoke(&token_record(jti), &claims.sub, Duration::from_secs(left))
            .await?;
        Ok(())
    }

    /// Revokes every token of `uid` issued before now; returns when.
    pub(crate) async fn revoke_all(&self, uid: &str) -> courier_cluster::Result<i64> {
        let now_ms = courier_cluster::now_ms();
        self.discovery
            .revoke(&user_record(uid), &now_ms.to_string(), self.revoke_all_for)
            .await?;
        Ok(now_ms)
    }
}
