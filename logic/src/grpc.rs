//! The gRPC service comets call: session lifecycle (with the inbox page a
//! client resumes from; closes in batches; a comet's restart; restoring
//! every session after the session store lost writes), periodic session
//! checks (with the inbox head), upstream sends, `Sync` pages and acks,
//! room registrations and load reports.
//!
//! Only callers with the cluster secret get here (an interceptor checks it
//! on every call); the uid a comet names is taken as given, since the
//! comet verified the client's token. Checks here are the protocol's name
//! rules ([`courier_proto::names`]) and what a user may do: the rooms it
//! may enter ([`crate::room_access`]; `CheckRooms`, and the rooms of an
//! open), and for a `Send` the sender's quota, a known target
//! ([`crate::senders`]) and the publish hook ([`crate::hooks`]). Every
//! backend failure becomes `UNAVAILABLE`, which tells the comet to retry or
//! to answer its client with a retryable error.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use courier_cluster::inbox::{Start, Stream};
use courier_cluster::{CometReport, Session};
use courier_proto::client::target::Kind;
use courier_proto::logic::logic_server::Logic;
use courier_proto::logic::open_result;
use courier_proto::logic::{
    AckReply, AckRequest, CheckRoomsReply, CheckRoomsRequest, CloseSessionsReply,
    CloseSessionsRequest, CometStartedReply, CometStartedRequest, ConnectReply, ConnectRequest,
    HeartbeatReply, HeartbeatRequest, OpenRefused, OpenResult, OpenSessionsReply,
    OpenSessionsRequest, Page, RenewOnlineReply, RenewOnlineRequest, RestoreSessionsReply,
    RestoreSessionsRequest, RoomOnlineReply, RoomOnlineRequest, RoomsChangedReply,
    RoomsChangedRequest, SendReply, SendRequest, SyncRequest,
};
use courier_proto::names::{
    check_comet_id, check_dedup_key, check_device, check_key, check_room, check_uid, InvalidName,
};
use courier_proto::Position;
use tonic::{Request, Response, Status};

use crate::hooks::{PublishAsk, Verdict};
use crate::policy::{open_session, OpenError, KICK_REASON};
use crate::publish::{Content, Dedup, PublishError, Recipients};
use crate::senders::SendRefused;
use crate::state::LogicState;
use crate::streams::{self, RESUME_PAGE};

/// Logic's gRPC service.
#[derive(Clone)]
pub(crate) struct LogicService {
    shared: Arc<LogicState>,
}

impl LogicService {
    pub(crate) fn new(shared: Arc<LogicState>) -> Self {
        Self { shared }
    }

    /// A client's message as the publish hook lets it go out: its op and
    /// data, as sent or rewritten; refused (`PERMISSION_DENIED`) or, with
    /// no answer, `UNAVAILABLE`.
    async fn moderated(
        &self,
        from: &str,
        to: Recipients<'_>,
        op: u32,
        data: bytes::Bytes,
    ) -> Result<(u32, bytes::Bytes), Status> {
        let target = match to {
            Recipients::Users([uid]) => serde_json::json!({ "user": uid }),
            Recipients::Room(room) => serde_json::json!({ "room": room }),
            _ => serde_json::Value::Null,
        };
        let ask = PublishAsk::new(from, target, op, &data);
        let unanswered = || Status::unavailable("the application did not answer; retry later");
        match self.shared.hooks.publish(&ask).await {
            Verdict::Accept => Ok((op, data)),
            Verdict::Rewrite { op, data } if data.len() <= self.shared.config.max_data => {
                Ok((op, data))
            }
            Verdict::Rewrite { data, .. } => {
                tracing::warn!(
                    bytes = data.len(),
                    "the publish hook rewrote a message past max_data"
                );
                Err(unanswered())
            }
            Verdict::Refuse(reason) => Err(Status::permission_denied(reason)),
            Verdict::Unanswered => Err(unanswered()),
        }
    }
}

/// Most sessions one `CloseSessions` call may name (the comet sends at
/// most 1,000).
const MAX_CLOSE_BATCH: usize = 10_000;
/// Session removals of one `CloseSessions` call in flight at once.
const CLOSE_CONCURRENCY: usize = 64;
/// Most sessions one `OpenSessions` call may name (the comet sends at most
/// 256).
const MAX_OPEN_BATCH: usize = 1_024;
/// Sessions of one `OpenSessions` call being opened at once.
const OPEN_CONCURRENCY: usize = 64;
/// Most sessions, and most rooms, one `RestoreSessions` call may name (the
/// comet sends at most 1,000).
const MAX_RESTORE_BATCH: usize = 10_000;

/// A `Send` refused before it was stored: over quota is
/// `RESOURCE_EXHAUSTED` (the comet says `RATE_LIMITED`), an unknown target
/// `NOT_FOUND`.
fn refused(e: SendRefused) -> Status {
    match e {
        SendRefused::OverQuota(_) => Status::resource_exhausted(e.to_string()),
        SendRefused::UnknownUser(_) => Status::not_found(e.to_string()),
        SendRefused::Cluster(e) => unavailable(e),
    }
}

fn unavailable(e: courier_cluster::Error) -> Status {
    crate::error::log_backend_failure(&e);
    Status::unavailable(e.to_string())
}

/// `value` passed `check`, or `INVALID_ARGUMENT` naming `field`.
fn checked(
    field: &str,
    value: &str,
    check: fn(&str) -> Result<(), InvalidName>,
) -> Result<(), Status> {
    check(value).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn session(comet_id: String, uid: String, key: String) -> Result<Session, Status> {
    checked("comet_id", &comet_id, check_comet_id)?;
    checked("uid", &uid, check_uid)?;
    checked("key", &key, check_key)?;
    Ok(Session {
        uid,
        key,
        comet_id,
        device: String::new(),
    })
}

/// [`session`] with the client's device id (checked unless empty).
fn device_session(
    comet_id: String,
    uid: String,
    key: String,
    device: String,
) -> Result<Session, Status> {
    if !device.is_empty() {
        checked("device", &device, check_device)?;
    }
    Ok(Session {
        device,
        ..session(comet_id, uid, key)?
    })
}

/// Opens one client's session under the login policy and reads the first
/// page of its inbox: `OpenSession`, and each entry of `OpenSessions`.
async fn open_one(shared: &LogicState, r: ConnectRequest) -> Result<ConnectReply, Status> {
    let (epoch, last_seq, max_bytes) = (r.epoch, r.last_seq, r.max_bytes);
    // The rooms first: nothing may fail once the session is recorded, or a
    // session nobody closes would stay behind.
    let allowed = rooms_allowed(shared, &r.uid, &r.rooms).await?;
    let denied_rooms = r
        .rooms
        .into_iter()
        .zip(allowed)
        .filter_map(|(room, ok)| (!ok).then_some(room))
        .collect();
    let s = device_session(r.comet_id, r.uid, r.key, r.device)?;
    match open_session(
        shared.config.login_policy,
        shared.sessions.as_ref(),
        &shared.publisher,
        &s,
    )
    .await
    {
        Ok(()) => {}
        Err(OpenError::AlreadyOnline) => return Err(Status::failed_precondition("already online")),
        Err(OpenError::Cluster(e)) => return Err(unavailable(e)),
    }
    // Read after the session exists: a message stored from now on is
    // published to this connection too, so none falls in between.
    let stream = Stream::User(&s.uid);
    let start = streams::start(stream, Position::new(epoch, last_seq), 0)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let start = streams::own_inbox(start);
    let page = streams::read(
        shared.inbox.as_ref(),
        stream,
        start,
        RESUME_PAGE,
        max_bytes as usize,
    )
    .await
    .map_err(unavailable)?;
    Ok(ConnectReply {
        heartbeat_secs: shared.config.heartbeat_secs(),
        inbox: Some(streams::page(page)),
        denied_rooms,
    })
}

/// Most rooms one `CheckRooms` (or one open) asks about.
const MAX_CHECKED_ROOMS: usize = 256;

/// Whether `uid` may join each of `rooms`, in order (a room with an
/// invalid name may not).
async fn rooms_allowed(
    shared: &LogicState,
    uid: &str,
    rooms: &[String],
) -> Result<Vec<bool>, Status> {
    if rooms.len() > MAX_CHECKED_ROOMS {
        return Err(Status::invalid_argument(format!(
            "{} rooms; at most {MAX_CHECKED_ROOMS}",
            rooms.len()
        )));
    }
    // One at a time: a connect names few rooms, and open rooms are
    // answered from the rule cache.
    let mut allowed = Vec::with_capacity(rooms.len());
    for room in rooms {
        let ok = check_room(room).is_ok()
            && shared
                .rooms
                .may_enter(uid, room)
                .await
                .map_err(unavailable)?;
        allowed.push(ok);
    }
    Ok(allowed)
}

#[tonic::async_trait]
impl Logic for LogicService {
    async fn open_session(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<ConnectReply>, Status> {
        open_one(&self.shared, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn open_sessions(
        &self,
        request: Request<OpenSessionsRequest>,
    ) -> Result<Response<OpenSessionsReply>, Status> {
        let sessions = request.into_inner().sessions;
        if sessions.len() > MAX_OPEN_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} sessions in one call; at most {MAX_OPEN_BATCH}",
                sessions.len()
            )));
        }
        let shared = &self.shared;
        let results = futures::stream::iter(sessions)
            .map(|r| async move {
                let result = match open_one(shared, r).await {
                    Ok(reply) => open_result::Result::Opened(reply),
                    Err(status) => open_result::Result::Refused(OpenRefused {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                };
                OpenResult {
                    result: Some(result),
                }
            })
            .buffered(OPEN_CONCURRENCY)
            .collect()
            .await;
        Ok(Response::new(OpenSessionsReply { results }))
    }

    async fn close_sessions(
        &self,
        request: Request<CloseSessionsRequest>,
    ) -> Result<Response<CloseSessionsReply>, Status> {
        let r = request.into_inner();
        if r.sessions.len() > MAX_CLOSE_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} sessions in one call; at most {MAX_CLOSE_BATCH}",
                r.sessions.len()
            )));
        }
        let closed = r
            .sessions
            .into_iter()
            .map(|c| session(r.comet_id.clone(), c.uid, c.key))
            .collect::<Result<Vec<_>, _>>()?;
        // Owned sessions and an owned store: a borrowing closure here trips
        // the higher-ranked lifetime check of the boxed `async_trait` future.
        let store = self.shared.sessions.clone();
        futures::stream::iter(closed)
            .map(move |s| {
                let store = store.clone();
                async move { store.remove(&s).await }
            })
            .buffer_unordered(CLOSE_CONCURRENCY)
            .try_collect::<()>()
            .await
            .map_err(unavailable)?;
        Ok(Response::new(CloseSessionsReply {}))
    }

    async fn comet_started(
        &self,
        request: Request<CometStartedRequest>,
    ) -> Result<Response<CometStartedReply>, Status> {
        let r = request.into_inner();
        checked("comet_id", &r.comet_id, check_comet_id)?;
        self.shared
            .sessions
            .forget_comet(&r.comet_id)
            .await
            .map_err(unavailable)?;
        tracing::info!(comet = %r.comet_id, "comet started; forgot what its previous process left");
        Ok(Response::new(CometStartedReply {}))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let r = request.into_inner();
        let s = device_session(r.comet_id, r.uid, r.key, r.device)?;
        let sessions = &self.shared.sessions;
        let present = async {
            if sessions.check(&s).await? {
                return Ok(true);
            }
            // The session is gone (its comet was forgotten while the
            // connection lived, say) but the connection is alive: restore
            // it, unless a newer login ended it.
            sessions.revive(&s).await
        };
        let streams = [Stream::User(&s.uid)];
        let heads = self.shared.inbox.heads(&streams);
        let (alive, heads) = futures::try_join!(present, heads).map_err(unavailable)?;
        if !alive {
            return Err(Status::failed_precondition(format!(
                "session ended: {KICK_REASON}"
            )));
        }
        Ok(Response::new(HeartbeatReply {
            inbox: heads.first().copied(),
        }))
    }

    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        let r = request.into_inner();
        checked("uid", &r.uid, check_uid)?;
        let send = r
            .send
            .ok_or_else(|| Status::invalid_argument("send is missing"))?;
        let max = self.shared.config.max_data;
        if send.data.len() > max {
            return Err(Status::invalid_argument(format!(
                "data is {} bytes; at most {max}",
                send.data.len()
            )));
        }
        // The store keeps the id for the dedup window: bounded and plain.
        if !send.client_msg_id.is_empty() {
            checked("client_msg_id", &send.client_msg_id, check_dedup_key)?;
        }
        self.shared.send_quota.take(&r.uid).map_err(refused)?;
        let kind = send.to.and_then(|t| t.kind);
        let to = match &kind {
            Some(Kind::User(uid)) => {
                checked("target user", uid, check_uid)?;
                let shared = &self.shared;
                shared
                    .known_users
                    .check(
                        uid,
                        shared.inbox.as_ref(),
                        &shared.accounts,
                        shared.sessions.as_ref(),
                    )
                    .await
                    .map_err(refused)?;
                Recipients::Users(std::slice::from_ref(uid))
            }
            Some(Kind::Room(room)) => {
                checked("target room", room, check_room)?;
                let may = self.shared.rooms.may_enter(&r.uid, room);
                if !may.await.map_err(unavailable)? {
                    return Err(Status::permission_denied(format!(
                        "the rules of room {room:?} do not let you send to it"
                    )));
                }
                Recipients::Room(room)
            }
            _ => return Err(Status::invalid_argument("send to a user or a room")),
        };
        let (op, data) = self.moderated(&r.uid, to, send.op, send.data).await?;
        let content = Content {
            from: r.uid,
            op,
            data,
            dedup: Some(Dedup::Send {
                client_msg_id: send.client_msg_id,
            }),
        };
        let accepted = self
            .shared
            .publisher
            .publish(to, content)
            .await
            .map_err(|e| match e {
                PublishError::Reused => Status::invalid_argument(
                    "client_msg_id was used for a different message within the dedup window",
                ),
                PublishError::Cluster(e) => unavailable(e),
            })?;
        let at = accepted.position.unwrap_or_default();
        Ok(Response::new(SendReply {
            msg_id: accepted.msg_id,
            seq: at.seq,
            epoch: at.epoch,
        }))
    }

    async fn check_rooms(
        &self,
        request: Request<CheckRoomsRequest>,
    ) -> Result<Response<CheckRoomsReply>, Status> {
        let r = request.into_inner();
        checked("uid", &r.uid, check_uid)?;
        let allowed = rooms_allowed(&self.shared, &r.uid, &r.rooms).await?;
        Ok(Response::new(CheckRoomsReply { allowed }))
    }

    async fn sync(&self, request: Request<SyncRequest>) -> Result<Response<Page>, Status> {
        let r = request.into_inner();
        checked("uid", &r.uid, check_uid)?;
        let stream = if r.room.is_empty() {
            Stream::User(&r.uid)
        } else {
            checked("room", &r.room, check_room)?;
            // Checked again here, not only at the join: a member removed
            // while joining (or since) reads nothing more.
            let may = self.shared.rooms.may_enter(&r.uid, &r.room);
            if !may.await.map_err(unavailable)? {
                return Err(Status::permission_denied(format!(
                    "the rules of room {:?} do not let you read it",
                    r.room
                )));
            }
            Stream::Room(&r.room)
        };
        let start = streams::start(stream, Position::new(r.epoch, r.after_seq), r.before_seq)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // A Sync always names a position (0 is one): the ack is only where
        // a device with no position at all starts.
        let start = match start {
            Start::Acked => Start::After(Position::NONE),
            other if r.room.is_empty() => streams::own_inbox(other),
            other => other,
        };
        let page = streams::read(
            self.shared.inbox.as_ref(),
            stream,
            start,
            r.limit as usize,
            r.max_bytes as usize,
        )
        .await
        .map_err(unavailable)?;
        Ok(Response::new(streams::page(page)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        let r = request.into_inner();
        checked("uid", &r.uid, check_uid)?;
        self.shared
            .inbox
            .ack(&r.uid, Position::new(r.epoch, r.seq))
            .await
            .map_err(unavailable)?;
        Ok(Response::new(AckReply {}))
    }

    async fn rooms_changed(
        &self,
        request: Request<RoomsChangedRequest>,
    ) -> Result<Response<RoomsChangedReply>, Status> {
        let r = request.into_inner();
        checked("comet_id", &r.comet_id, check_comet_id)?;
        let sessions = &self.shared.sessions;
        for room in &r.added {
            checked("room", room, check_room)?;
            sessions
                .add_room_comet(room, &r.comet_id)
                .await
                .map_err(unavailable)?;
        }
        for room in &r.removed {
            checked("room", room, check_room)?;
            sessions
                .remove_room_comet(room, &r.comet_id)
                .await
                .map_err(unavailable)?;
        }
        Ok(Response::new(RoomsChangedReply {}))
    }

    async fn renew_online(
        &self,
        request: Request<RenewOnlineRequest>,
    ) -> Result<Response<RenewOnlineReply>, Status> {
        let r = request.into_inner();
        checked("comet_id", &r.comet_id, check_comet_id)?;
        let parts = r.parts.max(1);
        if r.part >= parts {
            return Err(Status::invalid_argument(format!(
                "report part {} of {parts}",
                r.part
            )));
        }
        let report = CometReport {
            connections: r.connections,
            rooms: r.rooms.into_iter().collect(),
            part: r.part,
            parts,
        };
        self.shared
            .sessions
            .report_comet(&r.comet_id, &report)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(RenewOnlineReply {}))
    }

    async fn room_online(
        &self,
        request: Request<RoomOnlineRequest>,
    ) -> Result<Response<RoomOnlineReply>, Status> {
        let room = request.into_inner().room;
        checked("room", &room, check_room)?;
        let connections = self
            .shared
            .room_counts
            .room(&room)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(RoomOnlineReply { connections }))
    }

    async fn restore_sessions(
        &self,
        request: Request<RestoreSessionsRequest>,
    ) -> Result<Response<RestoreSessionsReply>, Status> {
        let r = request.into_inner();
        checked("comet_id", &r.comet_id, check_comet_id)?;
        if r.sessions.len() > MAX_RESTORE_BATCH || r.rooms.len() > MAX_RESTORE_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} sessions and {} rooms in one call; at most {MAX_RESTORE_BATCH} of each",
                r.sessions.len(),
                r.rooms.len()
            )));
        }
        let sessions = r
            .sessions
            .into_iter()
            .map(|s| device_session(r.comet_id.clone(), s.uid, s.key, s.device))
            .collect::<Result<Vec<_>, _>>()?;
        for room in &r.rooms {
            checked("room", room, check_room)?;
        }
        let store = self.shared.sessions.clone();
        // A session a newer login ended stays ended: its next check closes it.
        futures::stream::iter(sessions.clone())
            .map(move |s| {
                let store = store.clone();
                async move { store.revive(&s).await }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .try_collect::<Vec<bool>>()
            .await
            .map_err(unavailable)?;
        for room in &r.rooms {
            self.shared
                .sessions
                .add_room_comet(room, &r.comet_id)
                .await
                .map_err(unavailable)?;
        }
        let uids: std::collections::BTreeSet<&str> =
            sessions.iter().map(|s| s.uid.as_str()).collect();
        let streams: Vec<Stream<'_>> = uids
            .iter()
            .map(|uid| Stream::User(uid))
            .chain(r.rooms.iter().map(|room| Stream::Room(room)))
            .collect();
        let heads = self
            .shared
            .inbox
            .heads(&streams)
            .await
            .map_err(unavailable)?;
        let mut reply = RestoreSessionsReply::default();
        for (stream, head) in streams.iter().zip(heads) {
            match stream {
                Stream::User(uid) => reply.inboxes.insert((*uid).to_owned(), head),
                Stream::Room(room) => reply.rooms.insert((*room).to_owned(), head),
            };
        }
        Ok(Response::new(reply))
    }
}
