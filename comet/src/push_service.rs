//! The gRPC `Comet` service job calls: deliver to keys, rooms, everyone;
//! kick; stats. Logic calls it too: drain, and resync (report every
//! connection again, see [`crate::resync`]).
//!
//! Messages arrive as the bytes logic encoded. Each call splices them into
//! `Push` frames ([`courier_proto::encode_push`], split so no frame exceeds
//! `max_frame`) without decoding them, and queues the same `Bytes` to every
//! recipient. Queuing never waits; a recipient whose queue is full is dropped
//! as a slow consumer and not counted as delivered.
//! Each call also records its messages' push -> delivery latency
//! ([`crate::latency`]), which reads their `sent_at_ms` and nothing else.
//!
//! `PushKeysBatch` is that many `PushKeys` in one call (job sends one per
//! run of queued keys pushes, to save a round trip each). Every entry is
//! spliced before anything is queued, so an entry too large for a frame
//! rejects the whole batch with nothing delivered (job then retries the
//! entries one by one); the entries are then queued in order, so a
//! connection named by several entries gets their frames in entry order.
//! The batch size is capped at [`MAX_KEYS_BATCH`] entries.
//!
//! The service sees only the [`Directory`] of connections, not the rest of
//! the comet.

use std::sync::Arc;

use bytes::Bytes;
use courier_proto::client::{frame::Body, Frame, Kick, LeaveReply};
use courier_proto::comet::comet_server::Comet;
use courier_proto::comet::{
    BroadcastRequest, DrainReply, DrainRequest, KickReply, KickRequest, PushKeysBatchRequest,
    PushKeysRequest, PushReply, PushRoomRequest, RemoveFromRoomReply, RemoveFromRoomRequest,
    ResyncReply, ResyncRequest, RoomCount, StatsReply, StatsRequest,
};
use courier_proto::{encode_frame, encode_push};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::directory::Directory;
use crate::latency::DeliveryLatency;
use crate::resync::ResyncRequests;

/// Most entries one `PushKeysBatch` may carry.
pub(crate) const MAX_KEYS_BATCH: usize = 1024;

/// The push service of one comet.
#[derive(Debug, Clone)]
pub(crate) struct PushService {
    directory: Arc<Directory>,
    comet_id: Arc<str>,
    max_frame: usize,
    /// Cancelled by `Drain`: the comet's run loop starts draining.
    drain: CancellationToken,
    /// Where `Resync` asks for a pass.
    resync: ResyncRequests,
    /// Push -> delivery latency of what each call queues.
    latency: DeliveryLatency,
}

impl PushService {
    /// The push service of comet `comet_id`, whose frames are at most
    /// `max_frame` bytes.
    pub(crate) fn new(
        directory: Arc<Directory>,
        comet_id: &str,
        max_frame: usize,
        drain: CancellationToken,
        resync: ResyncRequests,
    ) -> Self {
        Self {
            directory,
            comet_id: Arc::from(comet_id),
            max_frame,
            drain,
            resync,
            latency: DeliveryLatency::new(),
        }
    }

    fn encode(&self, messages: &[Bytes]) -> Result<Vec<Bytes>, Status> {
        encode_push(messages, self.max_frame).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

fn delivered(connections: usize) -> Response<PushReply> {
    Response::new(PushReply {
        delivered: u32::try_from(connections).unwrap_or(u32::MAX),
    })
}

#[tonic::async_trait]
impl Comet for PushService {
    async fn push_keys(
        &self,
        request: Request<PushKeysRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let PushKeysRequest { keys, messages } = request.into_inner();
        let frames = self.encode(&messages)?;
        let n = self.directory.push_keys(&keys, &frames);
        self.latency.queued(n, &messages);
        Ok(delivered(n))
    }

    async fn push_keys_batch(
        &self,
        request: Request<PushKeysBatchRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let PushKeysBatchRequest { pushes } = request.into_inner();
        if pushes.len() > MAX_KEYS_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} pushes in one batch; at most {MAX_KEYS_BATCH}",
                pushes.len()
            )));
        }
        // Consecutive entries for the same connections (one user's stream)
        // go out as one Push frame, split only by `max_frame`: a batch must
        // not fill a connection's outbox with a frame per message.
        let mut runs: Vec<(Vec<String>, Vec<Bytes>, usize)> = Vec::new();
        for PushKeysRequest { keys, messages } in pushes {
            match runs.last_mut() {
                Some((run_keys, run, entries)) if *run_keys == keys => {
                    run.extend(messages);
                    *entries += 1;
                }
                _ => runs.push((keys, messages, 1)),
            }
        }
        // Splice everything first: an invalid entry must reject the batch
        // before any of it is queued.
        let mut spliced = Vec::with_capacity(runs.len());
        for (keys, messages, entries) in runs {
            let frames = self.encode(&messages)?;
            spliced.push((keys, messages, frames, entries));
        }
        let mut total = 0usize;
        for (keys, messages, frames, entries) in spliced {
            let n = self.directory.push_keys(&keys, &frames);
            self.latency.queued(n, &messages);
            total = total.saturating_add(n.saturating_mul(entries));
        }
        Ok(delivered(total))
    }

    async fn push_room(
        &self,
        request: Request<PushRoomRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let PushRoomRequest { room, messages } = request.into_inner();
        let frames = self.encode(&messages)?;
        let n = self.directory.push_room(&room, &frames);
        self.latency.queued(n, &messages);
        Ok(delivered(n))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let BroadcastRequest { messages, rate } = request.into_inner();
        let frames = self.encode(&messages)?;
        // A paced broadcast is measured as it starts.
        let n = match rate {
            0 => self.directory.broadcast(&frames),
            rate => self.directory.broadcast_paced(frames, rate),
        };
        self.latency.queued(n, &messages);
        Ok(delivered(n))
    }

    async fn kick(&self, request: Request<KickRequest>) -> Result<Response<KickReply>, Status> {
        let KickRequest { mut keys, reason } = request.into_inner();
        let frame = encode_frame(&Frame::new(0, Body::Kick(Kick { reason })));
        keys.sort_unstable();
        keys.dedup();
        let mut kicked = 0u32;
        for outbox in keys.iter().filter_map(|key| self.directory.keys.get(key)) {
            outbox.close_with(frame.clone());
            kicked = kicked.saturating_add(1);
        }
        Ok(Response::new(KickReply { kicked }))
    }

    async fn remove_from_room(
        &self,
        request: Request<RemoveFromRoomRequest>,
    ) -> Result<Response<RemoveFromRoomReply>, Status> {
        let RemoveFromRoomRequest { room, uids } = request.into_inner();
        let uids: std::collections::HashSet<&str> = uids.iter().map(String::as_str).collect();
        let told = encode_frame(&Frame::new(
            0,
            Body::LeaveReply(LeaveReply { room: room.clone() }),
        ));
        let directory = &self.directory;
        let mut removed = 0u32;
        for outbox in directory.rooms.members_of(&room) {
            let key = outbox.key();
            if directory
                .keys
                .uid_of(key)
                .is_some_and(|u| uids.contains(&*u))
            {
                directory.rooms.leave(&room, key);
                outbox.push(told.clone());
                removed = removed.saturating_add(1);
            }
        }
        Ok(Response::new(RemoveFromRoomReply { removed }))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsReply>, Status> {
        let directory = &self.directory;
        let mut rooms: Vec<RoomCount> = directory
            .rooms
            .counts()
            .into_iter()
            .map(|(room, connections)| RoomCount { room, connections })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        let counters = &directory.counters;
        Ok(Response::new(StatsReply {
            comet_id: self.comet_id.to_string(),
            connections: u32::try_from(directory.keys.len()).unwrap_or(u32::MAX),
            rooms,
            room_pushes: counters.room_pushes(),
            frames_queued: counters.frames_queued(),
            slow_consumers: counters.slow_consumers(),
        }))
    }

    async fn drain(&self, _: Request<DrainRequest>) -> Result<Response<DrainReply>, Status> {
        tracing::info!(comet = %self.comet_id, "drain requested over gRPC");
        self.drain.cancel();
        Ok(Response::new(DrainReply {
            connections: u32::try_from(self.directory.keys.len()).unwrap_or(u32::MAX),
        }))
    }

    async fn resync(&self, _: Request<ResyncRequest>) -> Result<Response<ResyncReply>, Status> {
        tracing::warn!(comet = %self.comet_id, "logic's session store lost writes; reporting every connection again");
        self.resync.request();
        Ok(Response::new(ResyncReply {
            connections: u32::try_from(self.directory.keys.len()).unwrap_or(u32::MAX),
        }))
    }
}
