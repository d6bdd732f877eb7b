//! Revoked tokens on this comet ([`courier_runtime::revoked`]): the set in
//! force, which `Auth` and `Refresh` check, and the closing of connections
//! a new revocation catches.
//!
//! The set follows discovery's records. Each change is compared with the
//! set before it; what was added is matched against every connection here
//! (the uid first, then the token's id or issue time) and those are closed
//! with a `Kick`. Changes are taken at most ten times a second, so a burst
//! of logouts costs a few scans of the connections, not one each.

use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::View;
use courier_proto::client::{frame::Body, Frame, Kick};
use courier_proto::encode_frame;
use courier_runtime::revoked::Revoked;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::state::CometState;

/// The reason a revoked token's connection is closed with.
pub(crate) const REVOKED_REASON: &str = "token revoked";
/// Least time between two scans for revoked connections.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Applies `records` as the set in force and closes the connections what
/// it adds catches; returns how many were closed.
pub(crate) fn apply(
    records: &View,
    revoked: &watch::Sender<Arc<Revoked>>,
    directory: &Directory,
) -> usize {
    let now = Arc::new(Revoked::from_records(records));
    let added = now.added_since(&revoked.borrow());
    revoked.send_replace(now);
    if added.is_empty() {
        return 0;
    }
    let users = Revoked::users(&added);
    let kick = encode_frame(&Frame::new(
        0,
        Body::Kick(Kick {
            reason: REVOKED_REASON.to_owned(),
        }),
    ));
    let closed = directory.keys.close_where(
        |who| users.contains(&*who.uid) && added.iter().any(|r| r.catches(&who.uid, who.token)),
        &kick,
    );
    if closed > 0 {
        metrics::counter!("courier_comet_revoked_closes_total").increment(closed as u64);
        tracing::info!(closed, "closed connections whose token was revoked");
    }
    closed
}

/// Follows discovery's records until `stop` fires.
pub(crate) async fn follow(
    mut records: watch::Receiver<View>,
    state: Arc<CometState>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = records.changed() => if changed.is_err() { return },
        }
        let view = records.borrow_and_update().clone();
        apply(&view, &state.revoked, &state.directory);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(MIN_SCAN_INTERVAL) => {}
        }
    }
}
