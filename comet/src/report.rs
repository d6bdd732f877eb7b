//! What the comet tells the cluster about itself.
//!
//! Two loops: room membership changes go to logic as they happen (coalesced,
//! retried), and every `report_interval` the full load (connections, room
//! counts) goes to logic (`RenewOnline`) and the connection count to the
//! discovery record. The periodic report also heals any lost room change.

use std::sync::Arc;
use std::time::Duration;

use courier_cluster::{CometNode, Registration};
use courier_proto::logic::{RenewOnlineRequest, RoomsChangedRequest};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::logic_client::LogicError;
use crate::state::CometState;

/// Pause before retrying a failed `RoomsChanged`.
const ROOMS_RETRY: Duration = Duration::from_secs(1);

/// Reports room membership changes until `stop` fires.
pub(crate) async fn room_changes(state: Arc<CometState>, stop: CancellationToken) {
    let changes = state.directory.rooms.changes();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changes.changed() => {}
        }
        let batch = changes.take();
        if batch.is_empty() {
            changes.acknowledged(batch.generation);
            continue;
        }
        let generation = batch.generation;
        let request = RoomsChangedRequest {
            comet_id: state.id().to_owned(),
            added: batch.added.iter().cloned().collect(),
            removed: batch.removed.iter().cloned().collect(),
        };
        if let Err(e) = state.logic.rooms_changed(request).await {
            log_failure("RoomsChanged", &e);
            changes.restore(batch);
            changes.notify_retry();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(ROOMS_RETRY) => {}
            }
        } else {
            changes.acknowledged(generation);
        }
    }
}

/// Reports load every `report_interval`, forever (the caller stops it).
pub(crate) async fn load(state: &CometState, registration: &Registration, mut record: CometNode) {
    let mut tick = tokio::time::interval(state.config.report_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let connections = u32::try_from(state.directory.keys.len()).unwrap_or(u32::MAX);
        let request = RenewOnlineRequest {
            comet_id: state.id().to_owned(),
            connections,
            rooms: state.directory.rooms.counts(),
        };
        if let Err(e) = state.logic.renew_online(request).await {
            log_failure("RenewOnline", &e);
        }
        if record.connections != connections {
            record.connections = connections;
            update(registration, &record);
        }
    }
}

/// Writes `record` to discovery.
pub(crate) fn update(registration: &Registration, record: &CometNode) {
    match serde_json::to_string(record) {
        Ok(json) => registration.update(json),
        Err(e) => tracing::error!(error = %e, "cannot encode the comet record"),
    }
}

fn log_failure(call: &str, e: &LogicError) {
    match e {
        LogicError::NoLogic => tracing::debug!(call, "no logic to report to yet"),
        e => tracing::warn!(call, error = %e, "report to logic failed"),
    }
}
