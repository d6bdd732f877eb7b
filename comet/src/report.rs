//! What the comet tells the cluster about itself.
//!
//! Two loops: room membership changes go to logic as they happen (coalesced,
//! retried), and every `report_interval` the full load (connections, room
//! counts) goes to logic (`RenewOnline`) and the connection count to the
//! discovery record. The periodic report also heals any lost room change.

use std::collections::HashMap;
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

/// Rooms per `RenewOnline` part: with room names of at most 64 bytes a part
/// stays under 700 KiB, far below gRPC's 4 MiB message limit.
const ROOMS_PER_PART: usize = 8192;

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
        let parts = renewals(
            state.id(),
            connections,
            state.directory.rooms.counts(),
            ROOMS_PER_PART,
        );
        for request in parts {
            if let Err(e) = state.logic.renew_online(request).await {
                log_failure("RenewOnline", &e);
                break;
            }
        }
        if record.connections != connections {
            record.connections = connections;
            update(registration, &record);
        }
    }
}

/// The `RenewOnline` calls of one report: `rooms` in parts of at most
/// `per_part` rooms (one part, possibly empty, when there are few).
fn renewals(
    comet_id: &str,
    connections: u32,
    rooms: HashMap<String, u32>,
    per_part: usize,
) -> Vec<RenewOnlineRequest> {
    let per_part = per_part.max(1);
    let parts = rooms.len().div_ceil(per_part).max(1);
    let mut requests: Vec<RenewOnlineRequest> = (0..parts)
        .map(|part| RenewOnlineRequest {
            comet_id: comet_id.to_owned(),
            connections,
            rooms: HashMap::with_capacity(per_part.min(rooms.len())),
            part: u32::try_from(part).unwrap_or(u32::MAX),
            parts: u32::try_from(parts).unwrap_or(u32::MAX),
        })
        .collect();
    for (i, (room, count)) in rooms.into_iter().enumerate() {
        requests[i / per_part].rooms.insert(room, count);
    }
    requests
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

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_comet_with_100k_rooms_reports_in_parts_under_the_grpc_limit() {
        const GRPC_LIMIT: usize = 4 * 1024 * 1024;
        let rooms: HashMap<String, u32> = (0..100_000)
            .map(|i| (format!("{i:0>64}"), 1_000_000))
            .collect();
        let parts = renewals("comet-1", 7, rooms.clone(), ROOMS_PER_PART);
        assert_eq!(parts.len(), 13);
        for (i, part) in parts.iter().enumerate() {
            assert!(
                part.encoded_len() < GRPC_LIMIT / 4,
                "part {i}: {}",
                part.encoded_len()
            );
            assert_eq!((part.part as usize, part.parts), (i, 13));
            assert_eq!(part.connections, 7);
        }
        let mut seen: HashMap<String, u32> = HashMap::new();
        for part in parts {
            seen.extend(part.rooms);
        }
        assert_eq!(seen, rooms, "every room in exactly one part");
    }

    #[test]
    fn no_rooms_is_one_empty_part() {
        let parts = renewals("comet-1", 0, HashMap::new(), ROOMS_PER_PART);
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].part, parts[0].parts), (0, 1));
    }
}
