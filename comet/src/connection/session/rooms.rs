//! A session's rooms: joining (once logic says the room's rules let the
//! user in), leaving, head counts, and noticing that the comet took the
//! connection out of a room (a removed member).

use courier_proto::client::{
    frame::Body, ErrorCode, Frame, Join, JoinReply, LeaveReply, RoomOnlineReply,
};
use courier_proto::names::check_room;
use courier_proto::{encode_frame, Position};

use super::{permits, sync_error_code, Session, DEFAULT_SYNC_LIMIT, MAX_SYNCS_IN_FLIGHT};
use crate::connection::pages::sync_reply;
use crate::logic_client::LOGIC_TIMEOUT;

impl Session {
    /// Whether a join or leave is within `join_rate`; answers it if not.
    pub(super) fn joins_allowed(&mut self, id: u64) -> bool {
        let limited = !self
            .join_limiter
            .allows(self.state.config.join_rate, &self.state.clock);
        if limited {
            let rate = self.state.config.join_rate;
            self.error(
                id,
                ErrorCode::RateLimited,
                format!("at most {rate} joins, leaves, head counts and refreshes per second"),
            );
        }
        !limited
    }

    /// Whether this connection is in `room`. A room the comet took it out
    /// of (a removed member, `RemoveFromRoom`) is forgotten here too.
    pub(super) fn in_room(&mut self, room: &str) -> bool {
        if !self.rooms.contains(room) {
            return false;
        }
        if self.state.directory.rooms.has(room, self.outbox.key()) {
            return true;
        }
        self.rooms.remove(room);
        false
    }

    /// Joins a room its rules let this user into. Logic is asked before
    /// the connection enters the room's index, so nothing of a room the
    /// user may not see reaches it; the read loop waits for the answer
    /// (joins are rate-limited, and pushes are written by the writer task
    /// meanwhile).
    pub(super) async fn join(&mut self, id: u64, join: Join) {
        let Join {
            room,
            last_seq,
            epoch,
        } = join;
        if !self.joins_allowed(id) {
            return;
        }
        if let Err(why) = check_room(&room) {
            return self.error(id, ErrorCode::BadRequest, why.to_string());
        }
        let already = self.in_room(&room);
        if already && epoch == 0 {
            // In already: nothing to do but say so.
            let reply = JoinReply { room, head: None };
            return self.reply(&Frame::new(id, Body::JoinReply(reply)));
        }
        let max = self.state.config.max_rooms;
        if !already && self.rooms.len() >= max {
            return self.error(id, ErrorCode::TooManyRooms, format!("at most {max} rooms"));
        }
        if !already {
            match self.state.logic.may_join(&self.uid, &room).await {
                Ok(true) => {}
                Ok(false) => {
                    return self.error(
                        id,
                        ErrorCode::NotAllowed,
                        format!("the rules of room {room:?} do not let you join it"),
                    )
                }
                Err(e) => return self.error(id, ErrorCode::Unavailable, e.client_message()),
            }
        }
        // The reply carries the room's head (read from logic, like a Sync),
        // so a client new to the room knows where it starts. With a
        // position, the client recovers what it missed: a page of the
        // room's history follows the reply.
        let Ok(permit) = permits(&mut self.syncs, MAX_SYNCS_IN_FLIGHT).try_acquire_owned() else {
            return self.error(id, ErrorCode::Unavailable, "too many syncs in flight");
        };
        if self.rooms.insert(room.clone()) {
            self.state.directory.rooms.join(&room, &self.outbox);
        }
        let recovering = epoch != 0;
        let limit = if recovering { DEFAULT_SYNC_LIMIT } else { 0 };
        let request = self.sync_request(&room, Position::new(epoch, last_seq), 0, limit);
        // The reply waits (off the read loop) until logic knows this comet
        // holds the room, so a room push published after JoinReply arrives.
        let directory = self.state.directory.clone();
        let logic = self.state.logic.clone();
        let outbox = self.outbox.clone();
        let max_frame = self.state.config.max_frame;
        let generation = directory.rooms.changes().generation();
        self.state.tracker.spawn(async move {
            let acked = directory.rooms.changes().wait_acknowledged(generation);
            if tokio::time::timeout(LOGIC_TIMEOUT, acked).await.is_err() {
                tracing::warn!(%room, "logic has not acknowledged the room yet; replying anyway");
            }
            let page = match logic.sync(request).await {
                Ok(page) => Some(page),
                Err(e) if e.is_refusal() => {
                    // Removed from the members while joining: out again.
                    directory.rooms.leave(&room, outbox.key());
                    drop(permit);
                    let refused = Frame::error(
                        id,
                        ErrorCode::NotAllowed,
                        format!("the rules of room {room:?} do not let you join it"),
                    );
                    outbox.push(encode_frame(&refused));
                    return;
                }
                Err(e) => {
                    // Joined all the same; the client reads the head later.
                    tracing::debug!(%room, error = %e, "no room head for the join reply");
                    None
                }
            };
            drop(permit);
            let head = page.as_ref().and_then(|p| p.head);
            let reply = JoinReply {
                room: room.clone(),
                head,
            };
            outbox.push(encode_frame(&Frame::new(id, Body::JoinReply(reply))));
            if let Some(page) = page.filter(|_| recovering) {
                outbox.push(sync_reply(0, &room, &page, max_frame));
            }
        });
    }

    /// How many are in a room this connection is in. Counted against
    /// `join_rate`: it costs logic a read of every comet's report.
    pub(super) fn room_online(&mut self, id: u64, room: String) {
        if let Err(why) = check_room(&room) {
            return self.error(id, ErrorCode::BadRequest, why.to_string());
        }
        if !self.in_room(&room) {
            return self.error(id, ErrorCode::NotInRoom, "join the room first");
        }
        if !self.joins_allowed(id) {
            return;
        }
        let Ok(permit) = permits(&mut self.syncs, MAX_SYNCS_IN_FLIGHT).try_acquire_owned() else {
            return self.error(id, ErrorCode::Unavailable, "too many reads in flight");
        };
        let logic = self.state.logic.clone();
        let outbox = self.outbox.clone();
        self.state.tracker.spawn(async move {
            let frame = match logic.room_online(room.clone()).await {
                Ok(connections) => Frame::new(
                    id,
                    Body::RoomOnlineReply(RoomOnlineReply { room, connections }),
                ),
                Err(e) => Frame::error(id, sync_error_code(&e), e.client_message()),
            };
            drop(permit);
            outbox.push(encode_frame(&frame));
        });
    }

    /// Waits, at most one logic timeout, until logic has acknowledged every
    /// room change recorded so far.
    pub(super) async fn rooms_known_to_logic(&self) {
        let changes = self.state.directory.rooms.changes();
        let acked = changes.wait_acknowledged(changes.generation());
        if tokio::time::timeout(LOGIC_TIMEOUT, acked).await.is_err() {
            tracing::warn!(key = %self.outbox.key(), "logic has not acknowledged the rooms yet");
        }
    }

    pub(super) fn leave(&mut self, id: u64, room: String) {
        if !self.joins_allowed(id) {
            return;
        }
        if let Err(why) = check_room(&room) {
            return self.error(id, ErrorCode::BadRequest, why.to_string());
        }
        if self.rooms.remove(&room) {
            self.state.directory.rooms.leave(&room, self.outbox.key());
        }
        self.reply(&Frame::new(id, Body::LeaveReply(LeaveReply { room })));
    }
}
