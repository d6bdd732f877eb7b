//! The login policy: what opening a session does when the user is already
//! online elsewhere.
//!
//! `multi` lets every device stay. `kick_old` publishes a [`KickKeys`] to
//! each comet holding the user's other connections (through the queue, like
//! any message, so job delivers it) and ends those sessions before adding
//! the new one. `reject_new` refuses the new session while another is live
//! (checked and recorded in one step in the session store, so of two logins
//! at once only one gets in), except one of the same device: a device that
//! reconnects (after a network switch, say) while its old connection still
//! looks alive replaces it, the way `kick_old` would, instead of being
//! locked out until the old one times out. A connection re-opening its own key is never treated as a
//! second login.
//!
//! Replaced sessions are *ended*, not just removed: a heartbeat already in
//! flight from the old connection then cannot bring its session back, and
//! the comet closes that connection when logic refuses the heartbeat.
//!
//! [`KickKeys`]: courier_proto::queue::KickKeys

use courier_cluster::{Session, Sessions};

use crate::config::LoginPolicy;
use crate::publish::Publisher;

/// Reason sent with a `kick_old` kick.
pub(crate) const KICK_REASON: &str = "logged in elsewhere";
/// Reason sent when a device's new connection replaces its old one.
pub(crate) const REPLACED_REASON: &str = "replaced by a new connection of this device";

/// Why a session was not opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// `reject_new` and the user already has a live session.
    #[error("already online")]
    AlreadyOnline,
    #[error(transparent)]
    Cluster(#[from] courier_cluster::Error),
}

/// Applies `policy` and records `session`.
pub(crate) async fn open_session(
    policy: LoginPolicy,
    sessions: &dyn Sessions,
    publisher: &Publisher,
    session: &Session,
) -> Result<(), OpenError> {
    match policy {
        LoginPolicy::Multi => {}
        LoginPolicy::KickOld => {
            let others = other_sessions(sessions, session).await?;
            replace(sessions, publisher, &session.uid, &others, KICK_REASON).await?;
        }
        LoginPolicy::RejectNew => {
            // Checked and recorded in one step: of two logins at once, one
            // gets in.
            if !sessions.add_alone(session).await? {
                return Err(OpenError::AlreadyOnline);
            }
            // What is left besides this connection is its device's older one.
            let replaced = match other_sessions(sessions, session).await {
                Ok(same_device) => {
                    replace(
                        sessions,
                        publisher,
                        &session.uid,
                        &same_device,
                        REPLACED_REASON,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = replaced {
                // Refused after all: the session must not stay recorded.
                let _ = sessions.remove(session).await;
                return Err(e.into());
            }
            return Ok(());
        }
    }
    sessions.add(session).await?;
    Ok(())
}

/// Kicks and ends `old` sessions of `uid`.
async fn replace(
    sessions: &dyn Sessions,
    publisher: &Publisher,
    uid: &str,
    old: &[Session],
    reason: &str,
) -> courier_cluster::Result<()> {
    if old.is_empty() {
        return Ok(());
    }
    publisher.kick(uid, old, reason).await?;
    for session in old {
        sessions.end(session).await?;
    }
    tracing::debug!(uid, replaced = old.len(), reason, "sessions replaced");
    Ok(())
}

async fn other_sessions(
    sessions: &dyn Sessions,
    session: &Session,
) -> courier_cluster::Result<Vec<Session>> {
    let mut all = sessions.user_sessions(&session.uid).await?;
    all.retain(|s| s.key != session.key);
    Ok(all)
}
