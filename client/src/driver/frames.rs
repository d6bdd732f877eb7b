//! What the driver does with each frame the comet sends on an established
//! connection: replies complete pending requests; pushes and pages go
//! through the stream sequencers ([`crate::streams`]) and come out as
//! events, in seq order and once each; the inbox is acked as it is shown;
//! stream heads (in heartbeat replies, asked for or not, and in history
//! pages) reveal a tail the comet never delivered; `Reconnect` and `Kick`
//! end the connection.

use std::time::Duration;

use courier_proto::client::{
    frame::Body, target, Ack, ErrorCode, Frame, Message, Push, StreamHead, Sync, SyncReply,
};
use courier_proto::Position;
use tokio::time::Instant;
use tracing::debug;

use super::{lost, Driver, SessionEnd};
use crate::session::Session;
use crate::streams::{Notice, Outcome};
use crate::{ClientError, Event};

/// Messages asked for per sync.
pub(super) const SYNC_LIMIT: u32 = 200;
/// How long a gap a live message opened may stay open before it is read
/// from the store (the missing message is usually right behind).
pub(super) const REORDER_WAIT: Duration = Duration::from_millis(50);
/// How long to wait before asking again for a sync the comet refused as
/// over its rate.
pub(super) const SYNC_RETRY_WAIT: Duration = Duration::from_millis(200);

impl Driver {
    pub(super) async fn on_frame(
        &mut self,
        session: &mut Session,
        frame: Frame,
    ) -> Result<(), SessionEnd> {
        let Some(body) = frame.body else {
            return Ok(());
        };
        match body {
            Body::Push(push) => self.on_push(session, push).await,
            Body::SyncReply(page) => match self.pending.remove(&frame.id).filter(|_| frame.id != 0)
            {
                // A page the application asked for (history): not ours to
                // order, but its head may show the stream moved on.
                Some(cmd) => {
                    let (room, head) = (page.room.clone(), page.head);
                    let _ = cmd.reply.send(Ok(Body::SyncReply(page)));
                    if let Some(head) = head {
                        self.on_head(session, &room, head).await?;
                    }
                    self.flush(session).await
                }
                None => {
                    let resumed = frame.id == 0;
                    self.syncs.remove(&frame.id);
                    self.on_page(session, page, resumed).await
                }
            },
            Body::HeartbeatReply(reply) => {
                if let Some(head) = reply.inbox {
                    self.on_head(session, "", head).await?;
                }
                // Heads of rooms we are in, sent unasked after the comet
                // reported its connections to logic again.
                for (room, head) in reply.rooms {
                    self.on_head(session, &room, head).await?;
                }
                self.flush(session).await
            }
            Body::Error(e) => {
                if let Some(room) = self.syncs.remove(&frame.id) {
                    debug!(code = e.code, message = %e.message, "sync failed");
                    if e.code == ErrorCode::RateLimited as i32 {
                        // Over the comet's rate: asked again in a moment.
                        self.sequencer(&room).sync_refused();
                        let retry_at = Instant::now() + SYNC_RETRY_WAIT;
                        self.reorder_at =
                            Some(self.reorder_at.map_or(retry_at, |t| t.min(retry_at)));
                    } else {
                        // The next head or gap asks again.
                        self.sequencer(&room).set_syncing(false);
                    }
                    return Ok(());
                }
                match self.pending.remove(&frame.id).filter(|_| frame.id != 0) {
                    Some(cmd) => {
                        let _ = cmd.reply.send(Err(ClientError::Server {
                            code: e.code,
                            message: e.message,
                        }));
                    }
                    None => {
                        self.emit(Event::Error {
                            code: e.code,
                            message: e.message,
                        })
                        .await
                    }
                }
                Ok(())
            }
            Body::Reconnect(r) => Err(SessionEnd::Lost {
                reason: format!("comet {} is draining", session.comet.id),
                after: Some(
                    Duration::from_millis(u64::from(r.after_ms)).min(super::MAX_DRAIN_WAIT),
                ),
            }),
            Body::Kick(k) if is_transient_kick(&k.reason) => {
                Err(lost(format!("kicked: {}", k.reason)))
            }
            Body::Kick(k) => Err(SessionEnd::Kicked(k.reason)),
            Body::LeaveReply(left) if frame.id == 0 => {
                // Unasked: the server took us out of the room.
                self.forget_room(&left.room);
                self.emit(Event::RemovedFromRoom { room: left.room }).await;
                Ok(())
            }
            reply @ (Body::SendReply(_)
            | Body::JoinReply(_)
            | Body::LeaveReply(_)
            | Body::RoomOnlineReply(_)
            | Body::AuthReply(_)) => {
                if let Some(cmd) = self.pending.remove(&frame.id) {
                    self.track_rooms(&cmd.body, &reply);
                    if let Body::JoinReply(join) = &reply {
                        self.on_join_reply(session, join).await?;
                    }
                    let _ = cmd.reply.send(Ok(reply));
                }
                Ok(())
            }
            // The comet took the token renewed in `serve`.
            Body::RefreshReply(_) => Ok(()),
            other => {
                debug!(?other, "ignoring a client-only frame from the server");
                Ok(())
            }
        }
    }

    fn track_rooms(&mut self, request: &Body, reply: &Body) {
        let mut state = self.shared.conn.lock();
        match (request, reply) {
            (Body::Join(j), Body::JoinReply(_)) if !state.rooms.contains(&j.room) => {
                state.rooms.push(j.room.clone());
            }
            (Body::Leave(l), Body::LeaveReply(_)) => {
                drop(state);
                self.forget_room(&l.room);
            }
            _ => {}
        }
    }

    /// We are no longer in `room`: not rejoined, not sequenced.
    fn forget_room(&mut self, room: &str) {
        let mut state = self.shared.conn.lock();
        state.rooms.retain(|r| r != room);
        state.room_positions.remove(room);
        self.rooms.remove(room);
    }

    /// A room we joined: where its history stands tells a new member where
    /// it starts; without a head, ask for it.
    async fn on_join_reply(
        &mut self,
        session: &mut Session,
        join: &courier_proto::client::JoinReply,
    ) -> Result<(), SessionEnd> {
        let sequencer = self.rooms.entry(join.room.clone()).or_default();
        match join.head {
            Some(head) => {
                let out = sequencer.start_at(head);
                self.apply(session, room_name(&join.room), out).await
            }
            None if !sequencer.knows_start() => {
                sequencer.set_syncing(true);
                self.request_sync(session, &join.room, Position::NONE, 0)
                    .await
            }
            None => Ok(()),
        }
    }

    /// The head of `room` ("" for the inbox), learned on the side (a
    /// heartbeat reply, a history page): syncs the stream when the head is
    /// past what was shown. A room with no sequencer (left, or never
    /// joined) is none of ours.
    async fn on_head(
        &mut self,
        session: &mut Session,
        room: &str,
        head: StreamHead,
    ) -> Result<(), SessionEnd> {
        let sequencer = match room {
            "" => &mut self.inbox,
            room => match self.rooms.get_mut(room) {
                Some(sequencer) => sequencer,
                None => return Ok(()),
            },
        };
        let out = sequencer.on_head(head);
        self.apply(session, room_name(room), out).await
    }

    /// The sequencer of `room` ("" for the inbox).
    fn sequencer(&mut self, room: &str) -> &mut crate::streams::Sequencer {
        if room.is_empty() {
            &mut self.inbox
        } else {
            self.rooms.entry(room.to_owned()).or_default()
        }
    }

    async fn on_push(&mut self, session: &mut Session, push: Push) -> Result<(), SessionEnd> {
        for msg in push.messages {
            match stream_of(&msg) {
                None => {
                    if self.recent.insert(&msg.msg_id) {
                        self.emit(Event::Message(msg)).await;
                    }
                }
                Some(room) => {
                    let out = self.sequencer(&room).on_message(msg);
                    self.apply(session, room_name(&room), out).await?;
                }
            }
        }
        self.ack(session).await?;
        self.flush(session).await
    }

    async fn on_page(
        &mut self,
        session: &mut Session,
        page: SyncReply,
        resumed: bool,
    ) -> Result<(), SessionEnd> {
        let room = page.room.clone();
        let out = self.sequencer(&room).on_page(page);
        let shown = out.show.len();
        self.apply(session, room_name(&room), out).await?;
        if resumed && shown > 0 {
            self.emit(Event::Missed {
                room: room_name(&room),
                count: shown,
            })
            .await;
        }
        self.ack(session).await?;
        self.flush(session).await
    }

    /// Emits what a sequencer released and sends the sync it asked for.
    async fn apply(
        &mut self,
        session: &mut Session,
        room: Option<String>,
        out: Outcome,
    ) -> Result<(), SessionEnd> {
        for notice in out.notices {
            let event = match notice {
                Notice::Gap { from, to } => Event::Gap {
                    room: room.clone(),
                    from_seq: from,
                    to_seq: to,
                },
                Notice::Reset { epoch } => Event::Reset {
                    room: room.clone(),
                    epoch,
                },
            };
            self.emit(event).await;
        }
        if room.is_none() && !out.show.is_empty() {
            self.ack_due = true;
        }
        for msg in out.show {
            self.emit(Event::Message(msg)).await;
        }
        let key = room.clone().unwrap_or_default();
        let position = self.sequencer(&key).position();
        {
            let mut state = self.shared.conn.lock();
            match &room {
                None => state.inbox = position,
                Some(r) => {
                    state.room_positions.insert(r.clone(), position);
                }
            }
        }
        if let Some(wanted) = out.sync {
            self.request_sync(session, &key, wanted.after, SYNC_LIMIT)
                .await?;
        }
        if out.sync_later && self.reorder_at.is_none() {
            self.reorder_at = Some(Instant::now() + REORDER_WAIT);
        }
        Ok(())
    }

    /// The reorder wait passed: syncs every stream whose gap is still open.
    pub(super) async fn sync_open_gaps(&mut self, session: &mut Session) -> Result<(), SessionEnd> {
        let mut wanted: Vec<(String, Position)> = Vec::new();
        if let Some(w) = self.inbox.gap_still_open() {
            wanted.push((String::new(), w.after));
        }
        for (room, sequencer) in &mut self.rooms {
            if let Some(w) = sequencer.gap_still_open() {
                wanted.push((room.clone(), w.after));
            }
        }
        for (stream, after) in wanted {
            self.request_sync(session, &stream, after, SYNC_LIMIT)
                .await?;
        }
        self.flush(session).await
    }

    /// Asks the comet for `room`'s ("" the inbox's) messages after `after`,
    /// at most `limit` (0: only the head).
    pub(super) async fn request_sync(
        &mut self,
        session: &mut Session,
        room: &str,
        after: Position,
        limit: u32,
    ) -> Result<(), SessionEnd> {
        let id = self.next_id();
        self.syncs.insert(id, room.to_owned());
        let sync = Body::Sync(Sync {
            after_seq: after.seq,
            limit,
            room: room.to_owned(),
            epoch: after.epoch,
            before_seq: 0,
        });
        self.write(session, Frame::new(id, sync)).await
    }

    /// Tells the comet how far the inbox has been shown, if messages were.
    async fn ack(&mut self, session: &mut Session) -> Result<(), SessionEnd> {
        let at = self.inbox.position();
        if !std::mem::take(&mut self.ack_due) || at == self.acked {
            return Ok(());
        }
        self.acked = at;
        let ack = Body::Ack(Ack {
            seq: at.seq,
            epoch: at.epoch,
        });
        let id = self.next_id();
        self.write(session, Frame::new(id, ack)).await
    }
}

/// The stream a message counts in: `None` when it is not stored (seq 0),
/// the room's name for a room message, "" for the inbox.
fn stream_of(m: &Message) -> Option<String> {
    if m.seq == 0 {
        return None;
    }
    match m.to.as_ref().and_then(|t| t.kind.as_ref()) {
        Some(target::Kind::Room(room)) => Some(room.clone()),
        _ => Some(String::new()),
    }
}

fn room_name(room: &str) -> Option<String> {
    (!room.is_empty()).then(|| room.to_owned())
}

/// Kicks for being slow or idle are recoverable: reconnect (and resume).
/// Any other kick (login policy, an operator) is final.
fn is_transient_kick(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["slow", "overflow", "idle", "queue full"]
        .iter()
        .any(|w| reason.contains(w))
}
