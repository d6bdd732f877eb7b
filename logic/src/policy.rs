//! The login policy: what opening a session does when the user is already
//! online elsewhere.
//!
//! `multi` lets every device stay. `kick_old` publishes a [`KickKeys`] to
//! each comet holding the user's other connections (through the queue, like
//! any message, so job delivers it) and forgets those sessions before adding
//! the new one. `reject_new` refuses the new session while another is live.
//! A connection re-opening its own key is never treated as a second login.
//!
//! [`KickKeys`]: courier_proto::queue::KickKeys

use courier_cluster::{Session, Sessions};

use crate::config::LoginPolicy;
use crate::publish::Publisher;

/// Reason sent with a `kick_old` kick.
pub(crate) const KICK_REASON: &str = "logged in elsewhere";

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
            if !others.is_empty() {
                publisher.kick(&session.uid, &others, KICK_REASON).await?;
                for old in &others {
                    sessions.remove(old).await?;
                }
                tracing::debug!(uid = %session.uid, kicked = others.len(), "kick_old");
            }
        }
        LoginPolicy::RejectNew => {
            if !other_sessions(sessions, session).await?.is_empty() {
                return Err(OpenError::AlreadyOnline);
            }
        }
    }
    sessions.add(session).await?;
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
