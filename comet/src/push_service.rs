//! The gRPC `Comet` service job calls: deliver to keys, rooms, everyone;
//! kick; stats.
//!
//! Each call encodes its messages once into `Push` frames (split so no frame
//! exceeds `max_frame`) and queues the same `Bytes` to every recipient.
//! Queuing never waits; a recipient whose queue is full is dropped as a slow
//! consumer and not counted as delivered.
//!
//! `PushKeysBatch` is that many `PushKeys` in one call (job sends one per
//! run of queued keys pushes, to save a round trip each). Every entry is
//! encoded before anything is queued, so an invalid entry rejects the whole
//! batch with nothing delivered (job then retries the entries one by one);
//! the entries are then queued in order, so a connection named by several
//! entries gets their frames in entry order. The batch size is capped at
//! [`MAX_KEYS_BATCH`] entries.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use courier_proto::client::{frame::Body, Frame, Kick, Message, Push};
use courier_proto::comet::comet_server::Comet;
use courier_proto::comet::{
    BroadcastRequest, KickReply, KickRequest, PushKeysBatchRequest, PushKeysRequest, PushReply,
    PushRoomRequest, RoomCount, StatsReply, StatsRequest,
};
use courier_proto::encode_frame;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::state::CometState;

/// Bytes of a `Frame` around its `Push` body: the field tag, its length
/// prefix and slack for the frame id (0, not encoded).
const PUSH_OVERHEAD: usize = 16;

/// Most entries one `PushKeysBatch` may carry.
pub(crate) const MAX_KEYS_BATCH: usize = 1024;

/// A message too large for any frame.
#[derive(Debug, thiserror::Error)]
#[error("message {msg_id} of {len} bytes does not fit in a {max_frame}-byte frame")]
pub(crate) struct MessageTooLarge {
    msg_id: String,
    len: usize,
    max_frame: usize,
}

/// Encodes `messages` into as few `Push` frames as fit in `max_frame`
/// bytes each, in order.
pub(crate) fn encode_push(
    messages: Vec<Message>,
    max_frame: usize,
) -> Result<Vec<Bytes>, MessageTooLarge> {
    let budget = max_frame.saturating_sub(PUSH_OVERHEAD);
    let mut frames = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for message in messages {
        let len = message.encoded_len();
        let cost = 1 + prost::length_delimiter_len(len) + len;
        if cost > budget {
            return Err(MessageTooLarge {
                msg_id: message.msg_id,
                len,
                max_frame,
            });
        }
        if size + cost > budget {
            frames.push(push_frame(std::mem::take(&mut chunk)));
            size = 0;
        }
        chunk.push(message);
        size += cost;
    }
    if !chunk.is_empty() {
        frames.push(push_frame(chunk));
    }
    Ok(frames)
}

fn push_frame(messages: Vec<Message>) -> Bytes {
    encode_frame(&Frame::new(0, Body::Push(Push { messages })))
}

/// The push service of one comet.
#[derive(Debug, Clone)]
pub(crate) struct PushService {
    state: Arc<CometState>,
}

impl PushService {
    pub(crate) fn new(state: Arc<CometState>) -> Self {
        Self { state }
    }

    fn encode(&self, messages: Vec<Message>) -> Result<Vec<Bytes>, Status> {
        encode_push(messages, self.state.config.max_frame)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    /// Queues `frames` to each of `keys` (once per distinct key); returns
    /// how many connections took them.
    fn push_to_keys(&self, keys: Vec<String>, frames: &[Bytes]) -> usize {
        if frames.is_empty() {
            return 0;
        }
        let registry = &self.state.registry;
        unique(keys)
            .filter_map(|key| registry.get(&key))
            .filter(|outbox| outbox.push_all(frames))
            .count()
    }

    fn delivered(&self, connections: usize, frames: usize) -> Response<PushReply> {
        self.state.counters.queued(connections * frames);
        Response::new(PushReply {
            delivered: u32::try_from(connections).unwrap_or(u32::MAX),
        })
    }
}

fn unique(keys: Vec<String>) -> impl Iterator<Item = String> {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.into_iter().filter(move |k| seen.insert(k.clone()))
}

#[tonic::async_trait]
impl Comet for PushService {
    async fn push_keys(
        &self,
        request: Request<PushKeysRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let PushKeysRequest { keys, messages } = request.into_inner();
        let frames = self.encode(messages)?;
        let delivered = self.push_to_keys(keys, &frames);
        Ok(self.delivered(delivered, frames.len()))
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
        let mut runs: Vec<(Vec<String>, Vec<Message>, usize)> = Vec::new();
        for PushKeysRequest { keys, messages } in pushes {
            match runs.last_mut() {
                Some((run_keys, run, entries)) if *run_keys == keys => {
                    run.extend(messages);
                    *entries += 1;
                }
                _ => runs.push((keys, messages, 1)),
            }
        }
        // Encode everything first: an invalid entry must reject the batch
        // before any of it is queued.
        let mut encoded = Vec::with_capacity(runs.len());
        for (keys, messages, entries) in runs {
            let frames = encode_push(messages, self.state.config.max_frame)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            encoded.push((keys, frames, entries));
        }
        let (mut delivered, mut queued) = (0usize, 0usize);
        for (keys, frames, entries) in encoded {
            let n = self.push_to_keys(keys, &frames);
            delivered = delivered.saturating_add(n.saturating_mul(entries));
            queued = queued.saturating_add(n.saturating_mul(frames.len()));
        }
        self.state.counters.queued(queued);
        Ok(Response::new(PushReply {
            delivered: u32::try_from(delivered).unwrap_or(u32::MAX),
        }))
    }

    async fn push_room(
        &self,
        request: Request<PushRoomRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let PushRoomRequest { room, messages } = request.into_inner();
        self.state.counters.room_push();
        let frames = self.encode(messages)?;
        if frames.is_empty() {
            return Ok(self.delivered(0, 0));
        }
        let delivered = self.state.rooms.push(&room, &frames);
        Ok(self.delivered(delivered, frames.len()))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<PushReply>, Status> {
        let frames = self.encode(request.into_inner().messages)?;
        if frames.is_empty() {
            return Ok(self.delivered(0, 0));
        }
        let delivered = self.state.registry.broadcast(&frames);
        Ok(self.delivered(delivered, frames.len()))
    }

    async fn kick(&self, request: Request<KickRequest>) -> Result<Response<KickReply>, Status> {
        let KickRequest { keys, reason } = request.into_inner();
        let frame = encode_frame(&Frame::new(0, Body::Kick(Kick { reason })));
        let mut kicked = 0u32;
        for outbox in unique(keys).filter_map(|key| self.state.registry.get(&key)) {
            outbox.close_with(frame.clone());
            kicked = kicked.saturating_add(1);
        }
        Ok(Response::new(KickReply { kicked }))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsReply>, Status> {
        let state = &self.state;
        let mut rooms: Vec<RoomCount> = state
            .rooms
            .counts()
            .into_iter()
            .map(|(room, connections)| RoomCount { room, connections })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(Response::new(StatsReply {
            comet_id: state.id().to_owned(),
            connections: u32::try_from(state.registry.len()).unwrap_or(u32::MAX),
            rooms,
            room_pushes: state.counters.room_pushes(),
            frames_queued: state.counters.frames_queued(),
            slow_consumers: state.counters.slow_consumers(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_proto::FrameCodec;
    use tokio_util::codec::Decoder;

    fn message(id: &str, len: usize) -> Message {
        Message {
            msg_id: id.into(),
            data: vec![7u8; len].into(),
            ..Default::default()
        }
    }

    #[test]
    fn batches_are_split_to_fit_max_frame() {
        let max = 1024;
        let messages: Vec<_> = (0..10).map(|i| message(&i.to_string(), 300)).collect();
        let frames = encode_push(messages, max).unwrap();
        assert!(frames.len() > 1);
        let mut codec = FrameCodec::new(max);
        let mut ids = Vec::new();
        for f in frames {
            let mut buf = bytes::BytesMut::from(&f[..]);
            let Some(Body::Push(push)) = codec.decode(&mut buf).unwrap().unwrap().body else {
                panic!("not a push");
            };
            ids.extend(push.messages.into_iter().map(|m| m.msg_id));
        }
        assert_eq!(ids, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn a_message_larger_than_a_frame_is_refused() {
        assert!(encode_push(vec![message("big", 2000)], 1024).is_err());
        assert!(encode_push(vec![], 1024).unwrap().is_empty());
    }
}
