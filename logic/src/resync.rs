//! Noticing that the session store lost writes, and having every comet
//! report again.
//!
//! Sessions, room registrations and the rest of what Redis holds are a
//! cache of what the comets know. If Redis comes back empty (a flush, a
//! restart without persistence) or older (a failover to a replica that
//! lagged), logic would publish to nobody: it no longer knows where anyone
//! is connected. Every [`MARK_EVERY`], each logic advances the store's
//! loss-detection counter ([`courier_cluster::Sessions::mark`]); a value no
//! higher than the last one it saw means writes were lost in between, and
//! this logic asks every comet to `Resync`: each reports its connections and
//! rooms again (`RestoreSessions`) and tells its clients where their streams
//! stand, so what was stored meanwhile is synced. Every logic notices on
//! its own; a comet coalesces the calls. While the counter cannot be
//! advanced (Redis does not answer within [`MARK_TIMEOUT`]), `/readyz` says
//! `not ready: session store unreachable`.

use std::sync::Arc;
use std::time::Duration;

use courier_proto::comet::ResyncRequest;
use tokio_util::sync::CancellationToken;

use crate::comet_calls::call_comet;
use crate::state::LogicState;

/// How often the counter is advanced: the time from Redis answering again
/// to the comets being asked is at most about this.
pub(crate) const MARK_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the counter: past it the session store counts as
/// unreachable.
const MARK_TIMEOUT: Duration = Duration::from_secs(1);
/// What `/readyz` says while the session store does not answer.
pub(crate) const SESSIONS_UNREACHABLE: &str = "session store unreachable";
/// How long one comet may take to accept a resync.
const RESYNC_CALL: Duration = Duration::from_secs(5);

/// Watches the session store until `stop`.
pub(crate) async fn watch_store(shared: Arc<LogicState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(MARK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<u64> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mark = match tokio::time::timeout(MARK_TIMEOUT, shared.sessions.mark()).await {
            Ok(Ok(mark)) => mark,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot advance the session store's mark");
                shared.readiness.set_blocked(SESSIONS_UNREACHABLE, true);
                continue;
            }
            Err(_) => {
                tracing::debug!("the session store did not answer within {MARK_TIMEOUT:?}");
                shared.readiness.set_blocked(SESSIONS_UNREACHABLE, true);
                continue;
            }
        };
        shared.readiness.set_blocked(SESSIONS_UNREACHABLE, false);
        if let Some(previous) = last.filter(|previous| mark <= *previous) {
            tracing::warn!(
                previous,
                mark,
                "the session store lost writes; asking every comet to report its connections again"
            );
            metrics::counter!("courier_logic_session_store_losses_total").increment(1);
            resync_all(&shared).await;
        }
        last = Some(mark);
    }
}

/// Asks every registered comet to resync, concurrently.
pub(crate) async fn resync_all(shared: &LogicState) {
    let comets = shared.comets.all();
    let calls = comets.iter().map(|comet| async move {
        let reply = call_comet(shared, &comet.grpc, RESYNC_CALL, |mut c| async move {
            c.resync(ResyncRequest {}).await
        })
        .await;
        match reply {
            Ok(r) => tracing::info!(comet = %comet.id, connections = r.connections, "comet resyncing"),
            Err(e) => tracing::warn!(comet = %comet.id, error = %e, "cannot ask a comet to resync; its session checks will restore its sessions"),
        }
    });
    futures::future::join_all(calls).await;
}
