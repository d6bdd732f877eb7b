//! An authenticated connection's reader: one frame at a time, never waiting
//! on logic.
//!
//! Replies are queued to the connection's own outbox. Calls to logic that
//! a reply depends on (`Send`, `Sync`, a recovering `Join`) run in their own
//! task, bounded per connection; session checks (once per `session_check`,
//! by time: the reply to a `Heartbeat` when one comes, else an unasked
//! `HeartbeatReply`, carrying the inbox head logic returns; every other
//! heartbeat is answered here) run one at a time, and acks are coalesced
//! ([`super::acks`]). So a slow logic delays answers, never reading, and an
//! idle connection costs logic one call per `session_check`. One timer per
//! connection covers the idle limit, the token's expiry (the connection
//! closes with `TOKEN_EXPIRED` unless a `Refresh` moved it) and the next
//! check. Joining, leaving and counting rooms are in [`rooms`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_proto::client::{
    self, frame::Body, target::Kind, Ack, AuthReply, ErrorCode, Frame, HeartbeatReply, Join, Kick,
    Leave, Reconnect, Refresh, RefreshReply, RoomOnline, Sync,
};
use courier_proto::logic::{HeartbeatRequest, SendRequest, SyncRequest};
use courier_proto::names::check_room;
use courier_proto::{encode_frame, FrameCodec, Position};
use courier_runtime::revoked::TokenStamp;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use super::acks::{Acker, Acks};
use super::handshake::{bad_frame, page_bytes, Authenticated};
use super::pages::sync_reply;
use super::room_set::RoomSet;
use crate::limits::LazyLimiter;
use crate::logic_client::LogicError;
use crate::outbox::Outbox;
use crate::state::CometState;

mod rooms;

/// `Send` frames one connection may have waiting on logic at once.
const MAX_SENDS_IN_FLIGHT: usize = 32;
/// `Sync` frames (and recovering joins) one connection may have waiting.
const MAX_SYNCS_IN_FLIGHT: usize = 4;
/// Most messages a `Sync` gets (a limit of 0 asks for the head only), and
/// what a recovering `Join` reads.
const MAX_SYNC_LIMIT: u32 = 500;
const DEFAULT_SYNC_LIMIT: u32 = 100;

/// When a new connection's first session check is due: at a random point
/// of the second half of the first interval, so connections that came in
/// together (a reconnect storm) are checked spread out, and none sooner
/// than half an interval after its session opened.
fn first_check(every: std::time::Duration) -> Instant {
    let fraction: f64 = rand::random();
    Instant::now() + every.mul_f64(0.5 + fraction / 2.0)
}

/// The moment `exp` (seconds since the epoch) comes, on the runtime's clock.
fn instant_of(exp: u64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::now() + Duration::from_secs(exp).saturating_sub(now)
}

/// `exp` (seconds since the epoch) in milliseconds, as the protocol has it.
fn unix_ms(exp: u64) -> i64 {
    i64::try_from(exp.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The semaphore in `cell`, made with `n` permits on first use.
fn permits(cell: &mut Option<Arc<Semaphore>>, n: usize) -> Arc<Semaphore> {
    cell.get_or_insert_with(|| Arc::new(Semaphore::new(n)))
        .clone()
}

/// What the reader does after a frame.
enum Next {
    Continue,
    Close(&'static str),
    /// A `Join`, which waits for logic's answer on the room's rules.
    Join(u64, Join),
}

/// One authenticated connection.
#[derive(Debug)]
pub(crate) struct Session {
    state: Arc<CometState>,
    outbox: Outbox,
    uid: Arc<str>,
    /// The client's device id (empty: none), carried by heartbeats.
    device: String,
    /// Rooms this connection is in; only this task changes them.
    rooms: RoomSet,
    /// One permit: held by the session check in flight, if any. This and
    /// the other limits below are made on first use: most connections
    /// never send, sync or ack, and an idle one should not pay for them.
    heartbeat: Option<Arc<Semaphore>>,
    /// When the session is next checked with logic.
    next_check: Instant,
    /// When the connection's token expires (a `Refresh` moves it).
    expires_at: Instant,
    sends: Option<Arc<Semaphore>>,
    syncs: Option<Arc<Semaphore>>,
    acks: Option<Arc<Acks>>,
    /// `send_rate` of upstream sends.
    send_limiter: LazyLimiter,
    /// `join_rate` of joins and leaves.
    join_limiter: LazyLimiter,
    /// `sync_rate` of `Sync` pages.
    sync_limiter: LazyLimiter,
}

impl Session {
    /// A session for `uid` writing through `outbox`.
    pub(crate) fn new(state: Arc<CometState>, outbox: Outbox, uid: Arc<str>) -> Self {
        Self {
            outbox,
            uid,
            device: String::new(),
            rooms: RoomSet::default(),
            heartbeat: None,
            next_check: first_check(state.config.session_check),
            expires_at: Instant::now(),
            sends: None,
            syncs: None,
            acks: None,
            send_limiter: LazyLimiter::default(),
            join_limiter: LazyLimiter::default(),
            sync_limiter: LazyLimiter::default(),
            state,
        }
    }

    /// Joins the rooms asked for at auth, queues `AuthReply` and the page of
    /// the inbox the client missed, then lets the pushes held back since the
    /// handshake through: what was missed arrives before anything live.
    pub(crate) async fn start(&mut self, auth: Authenticated) {
        self.device = auth.device;
        self.expires_at = instant_of(auth.expires);
        let max_rooms = self.state.config.max_rooms;
        let mut joined = Vec::new();
        for room in auth.rooms {
            if joined.len() >= max_rooms {
                break;
            }
            if check_room(&room).is_err() || self.rooms.contains(&room) {
                continue;
            }
            self.state.directory.rooms.join(&room, &self.outbox);
            self.rooms.insert(room.clone());
            joined.push(room);
        }
        // Room pushes published after AuthReply must reach this connection:
        // wait (bounded) until logic knows this comet holds its rooms.
        self.rooms_known_to_logic().await;
        let heartbeat_secs =
            u32::try_from(self.state.config.heartbeat.as_secs().max(1)).unwrap_or(u32::MAX);
        let reply = Frame::new(
            auth.frame_id,
            Body::AuthReply(AuthReply {
                uid: self.uid.to_string(),
                key: self.outbox.key().to_string(),
                heartbeat_secs,
                rooms: joined,
                inbox: auth.inbox.head,
                expires_at_ms: unix_ms(auth.expires),
            }),
        );
        self.outbox.push_first(encode_frame(&reply));
        // Always, even empty: it tells the client where its inbox starts.
        let max_frame = self.state.config.max_frame;
        self.outbox
            .push_first(sync_reply(0, "", &auth.inbox, max_frame));
        self.outbox.release();
    }

    /// Reads frames until the connection ends; returns why it ended.
    pub(crate) async fn run<R: AsyncRead + Unpin>(
        &mut self,
        frames: &mut FramedRead<R, FrameCodec>,
    ) -> &'static str {
        let idle = self.state.config.idle_timeout();
        let frames_in = metrics::counter!("courier_comet_frames_in_total");
        // One timer for whatever comes first: the idle limit, the token's
        // expiry, the next session check.
        let mut idle_at = Instant::now() + idle;
        let deadline = tokio::time::sleep_until(self.next_due(idle_at));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                _ = self.outbox.closing() => return "closed by the comet",
                _ = self.state.draining.cancelled() => {
                    let after_ms = super::reconnect_jitter_ms();
                    self.outbox.close_with(encode_frame(&Frame::new(0, Body::Reconnect(Reconnect { after_ms }))));
                    return "draining";
                }
                _ = &mut deadline => {
                    let now = Instant::now();
                    if now >= self.expires_at {
                        self.close_with_error(
                            0,
                            ErrorCode::TokenExpired,
                            "the token expired; send Refresh with a newer one before it does",
                        );
                        return "token expired";
                    }
                    if now >= idle_at {
                        self.close_with_error(0, ErrorCode::Idle, "no frame within 3 heartbeats");
                        return "idle";
                    }
                    // The session check is due: by time, not by heartbeats,
                    // so a client that sends other frames is checked too.
                    self.check_session(0);
                    deadline.as_mut().reset(self.next_due(idle_at));
                }
                next = frames.next() => match next {
                    None => return "closed by the client",
                    Some(Err(e)) => {
                        match bad_frame(&e).frame {
                            Some(frame) => self.outbox.close_with(encode_frame(&frame)),
                            None => self.outbox.finish(),
                        }
                        return "bad frame";
                    }
                    Some(Ok(frame)) => {
                        frames_in.increment(1);
                        idle_at = Instant::now() + idle;
                        match self.on_frame(frame) {
                            Next::Continue => {}
                            Next::Close(reason) => return reason,
                            // Boxed: inlined, the logic call's future would make
                            // every connection's task as big as it, idle or not.
                            Next::Join(id, join) => Box::pin(self.join(id, join)).await,
                        }
                        deadline.as_mut().reset(self.next_due(idle_at));
                    }
                },
            }
        }
    }

    /// The first of `idle_at`, the token's expiry and (when checks are
    /// timed) the next session check.
    fn next_due(&self, idle_at: Instant) -> Instant {
        let due = idle_at.min(self.expires_at);
        match self.state.config.session_check.is_zero() {
            true => due,
            false => due.min(self.next_check),
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Next {
        let id = frame.id;
        match frame.body {
            Some(Body::Heartbeat(_)) => self.heartbeat(id),
            Some(Body::Join(join)) => return Next::Join(id, join),
            Some(Body::Leave(Leave { room })) => self.leave(id, room),
            Some(Body::Send(send)) => self.send(id, send),
            Some(Body::Sync(sync)) => self.sync(id, sync),
            Some(Body::RoomOnline(RoomOnline { room })) => self.room_online(id, room),
            Some(Body::Ack(Ack { seq, epoch })) => self.ack(Position::new(epoch, seq)),
            Some(Body::Refresh(Refresh { token })) => self.refresh(id, &token),
            Some(Body::Auth(_)) => {
                self.close_with_error(id, ErrorCode::Unexpected, "already authenticated");
                return Next::Close("second Auth");
            }
            Some(
                Body::AuthReply(_)
                | Body::HeartbeatReply(_)
                | Body::SendReply(_)
                | Body::Push(_)
                | Body::JoinReply(_)
                | Body::LeaveReply(_)
                | Body::Reconnect(_)
                | Body::Kick(_)
                | Body::Error(_)
                | Body::SyncReply(_)
                | Body::RoomOnlineReply(_)
                | Body::RefreshReply(_),
            ) => {
                self.close_with_error(id, ErrorCode::Unexpected, "server-only frame");
                return Next::Close("server-only frame");
            }
            None => {
                self.close_with_error(id, ErrorCode::BadFrame, "frame without a known body");
                return Next::Close("frame without body");
            }
        }
        Next::Continue
    }

    /// The page of `room` ("" for the inbox) after `after`, or, with
    /// `before_seq` > 0, below it (paging back).
    fn sync_request(
        &self,
        room: &str,
        after: Position,
        before_seq: u64,
        limit: u32,
    ) -> SyncRequest {
        SyncRequest {
            comet_id: self.state.id().to_owned(),
            uid: self.uid.to_string(),
            key: self.outbox.key().to_string(),
            room: room.to_owned(),
            after_seq: after.seq,
            epoch: after.epoch,
            limit,
            max_bytes: page_bytes(self.state.config.max_frame),
            before_seq,
        }
    }

    /// A page of the inbox or of a room this connection is in.
    fn sync(&mut self, id: u64, sync: Sync) {
        if !sync.room.is_empty() {
            if let Err(why) = check_room(&sync.room) {
                return self.error(id, ErrorCode::BadRequest, why.to_string());
            }
            if !self.in_room(&sync.room) {
                return self.error(id, ErrorCode::NotInRoom, "join the room first");
            }
        }
        let rate = self.state.config.sync_rate;
        if !self.sync_limiter.allows(rate, &self.state.clock) {
            return self.error(
                id,
                ErrorCode::RateLimited,
                format!("at most {rate} syncs per second"),
            );
        }
        let Ok(permit) = permits(&mut self.syncs, MAX_SYNCS_IN_FLIGHT).try_acquire_owned() else {
            return self.error(id, ErrorCode::Unavailable, "too many syncs in flight");
        };
        let limit = sync.limit.min(MAX_SYNC_LIMIT);
        let after = Position::new(sync.epoch, sync.after_seq);
        let request = self.sync_request(&sync.room, after, sync.before_seq, limit);
        let logic = self.state.logic.clone();
        let outbox = self.outbox.clone();
        let max_frame = self.state.config.max_frame;
        self.state.tracker.spawn(async move {
            let frame = match logic.sync(request).await {
                Ok(page) => sync_reply(id, &sync.room, &page, max_frame),
                Err(e) => encode_frame(&Frame::error(id, sync_error_code(&e), e.client_message())),
            };
            drop(permit);
            outbox.push(frame);
        });
    }

    /// Records how far the user has read; sent to logic coalesced.
    fn ack(&mut self, at: Position) {
        let acks = self.acks.get_or_insert_with(Arc::default);
        if acks.record(at) {
            let who = Acker {
                comet_id: self.state.id().to_owned(),
                uid: self.uid.to_string(),
                key: self.outbox.key().to_string(),
            };
            let sender = acks.clone().send(self.state.logic.clone(), who);
            self.state.tracker.spawn(sender);
        }
    }

    fn send(&mut self, id: u64, send: client::Send) {
        let target = send.to.as_ref().and_then(|t| t.kind.as_ref());
        if !matches!(target, Some(Kind::User(_) | Kind::Room(_))) {
            return self.error(
                id,
                ErrorCode::BadRequest,
                "Send must target a user or a room",
            );
        }
        if !self
            .send_limiter
            .allows(self.state.config.send_rate, &self.state.clock)
        {
            let rate = self.state.config.send_rate;
            return self.error(
                id,
                ErrorCode::RateLimited,
                format!("at most {rate} sends per second"),
            );
        }
        let Ok(permit) = permits(&mut self.sends, MAX_SENDS_IN_FLIGHT).try_acquire_owned() else {
            return self.error(id, ErrorCode::Unavailable, "too many sends in flight");
        };
        let request = SendRequest {
            comet_id: self.state.id().to_owned(),
            uid: self.uid.to_string(),
            key: self.outbox.key().to_string(),
            send: Some(send),
        };
        let logic = self.state.logic.clone();
        let outbox = self.outbox.clone();
        self.state.tracker.spawn(async move {
            let frame = match logic.send(request).await {
                Ok(reply) => Frame::new(
                    id,
                    Body::SendReply(client::SendReply {
                        msg_id: reply.msg_id,
                        seq: reply.seq,
                        epoch: reply.epoch,
                    }),
                ),
                Err(e) => Frame::error(id, send_error_code(&e), e.client_message()),
            };
            drop(permit);
            outbox.push(encode_frame(&frame));
        });
    }

    /// Answers a client heartbeat. Once per `session_check` the session
    /// is checked with logic (at most one call in flight) and the reply
    /// carries the inbox head logic returns, so a client learns of a
    /// message that never reached it; otherwise, with a check already in
    /// flight, or if logic fails, the reply carries no head.
    fn heartbeat(&mut self, id: u64) {
        if !self.check_session(id) {
            self.reply(&Frame::new(
                id,
                Body::HeartbeatReply(HeartbeatReply::default()),
            ));
        }
    }

    /// Checks the session with logic if a check is due and none is in
    /// flight; the `HeartbeatReply` to `id` (0: unasked) carries the inbox
    /// head. Whether a check was started.
    fn check_session(&mut self, id: u64) -> bool {
        let now = Instant::now();
        if now < self.next_check {
            return false;
        }
        self.next_check = now + self.state.config.session_check;
        // The permit also lets the disconnect path wait for the check (see
        // `heartbeat_gate`).
        let Ok(permit) = permits(&mut self.heartbeat, 1).try_acquire_owned() else {
            return false;
        };
        let request = HeartbeatRequest {
            comet_id: self.state.id().to_owned(),
            uid: self.uid.to_string(),
            key: self.outbox.key().to_string(),
            device: self.device.clone(),
        };
        let logic = self.state.logic.clone();
        let outbox = self.outbox.clone();
        self.state.tracker.spawn(async move {
            let inbox = match logic.heartbeat(request).await {
                Ok(head) => head,
                Err(e) if e.is_refusal() => {
                    // A newer login ended this session: the connection
                    // goes too.
                    drop(permit);
                    let reason = e.client_message();
                    tracing::info!(key = %outbox.key(), %reason, "session ended by logic; closing");
                    let kick = Frame::new(0, Body::Kick(Kick { reason }));
                    outbox.close_with(encode_frame(&kick));
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "session heartbeat failed");
                    None
                }
            };
            drop(permit);
            if id == 0 && inbox.is_none() {
                return; // unasked, and nothing to say
            }
            let reply = Frame::new(
                id,
                Body::HeartbeatReply(HeartbeatReply {
                    inbox,
                    ..HeartbeatReply::default()
                }),
            );
            outbox.push(encode_frame(&reply));
        });
        true
    }

    /// A newer token for this connection: it must name the same user.
    /// Counted against `join_rate` (each costs a signature check).
    fn refresh(&mut self, id: u64, token: &str) {
        if !self.joins_allowed(id) {
            return;
        }
        match self.state.tokens.verify(token) {
            Ok(claims) if *claims.sub != *self.uid => {
                self.error(id, ErrorCode::BadRequest, "the token is for another user");
            }
            Ok(claims) if self.state.revoked.borrow().revokes(&claims) => {
                self.error(id, ErrorCode::TokenRevoked, "this token was revoked");
            }
            Ok(claims) => {
                self.state
                    .directory
                    .keys
                    .set_token(self.outbox.key(), TokenStamp::of(&claims));
                // A revocation applied since the check above scanned the
                // old stamp: look again.
                if self.state.revoked.borrow().revokes(&claims) {
                    return self.close_with_error(
                        id,
                        ErrorCode::TokenRevoked,
                        "this token was revoked",
                    );
                }
                self.expires_at = instant_of(claims.exp);
                let expires_at_ms = unix_ms(claims.exp);
                self.reply(&Frame::new(
                    id,
                    Body::RefreshReply(RefreshReply { expires_at_ms }),
                ));
            }
            Err(e) => self.error(id, ErrorCode::Unauthenticated, e.to_string()),
        }
    }

    /// Acquired once no session heartbeat is in flight. The disconnect path
    /// waits for it before queuing the close, or a late check could bring
    /// the closed session back in logic.
    pub(crate) fn heartbeat_gate(&self) -> Option<Arc<Semaphore>> {
        self.heartbeat.clone()
    }

    fn reply(&self, frame: &Frame) {
        self.outbox.push(encode_frame(frame));
    }

    fn error(&self, id: u64, code: ErrorCode, message: impl Into<String>) {
        self.reply(&Frame::error(id, code, message));
    }

    fn close_with_error(&self, id: u64, code: ErrorCode, message: &str) {
        self.outbox
            .close_with(encode_frame(&Frame::error(id, code, message)));
    }
}

/// Leaving every room and the key index happens on drop, so it happens
/// however the connection task ends (even if it is cancelled).
impl Drop for Session {
    fn drop(&mut self) {
        let directory = &self.state.directory;
        for room in self.rooms.drain() {
            directory.rooms.leave(&room, self.outbox.key());
        }
        directory.keys.remove(self.outbox.key());
    }
}

fn sync_error_code(e: &LogicError) -> ErrorCode {
    if e.is_refusal() {
        ErrorCode::NotAllowed
    } else if e.is_bad_request() {
        ErrorCode::BadRequest
    } else {
        ErrorCode::Unavailable
    }
}

fn send_error_code(e: &LogicError) -> ErrorCode {
    if e.is_refusal() {
        ErrorCode::Rejected
    } else if e.is_over_quota() {
        ErrorCode::RateLimited
    } else if e.is_bad_request() {
        ErrorCode::BadRequest
    } else {
        ErrorCode::Unavailable
    }
}
