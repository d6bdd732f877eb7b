//! Room rules and members over HTTP: `PUT /rooms/{room}` gives a room its
//! own join rule, `GET /rooms/{room}` says which rule applies, and
//! `/rooms/{room}/members` adds, removes and lists members (writes need a
//! key with the `rooms` scope; reads a `read` key).
//!
//! Removing a member takes effect on every comet at once: logic calls each
//! comet holding the room directly (not through the queue), which takes
//! the user's connections out of it and tells them with an unasked
//! `LeaveReply`. A comet that does not answer keeps them in until they
//! leave or reconnect; joining again is refused everywhere.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use courier_cluster::rooms::MAX_MEMBERS_PER_CALL;
use courier_proto::comet::RemoveFromRoomRequest;
use courier_proto::names;

use super::auth::{ReadKey, RoomsKey};
use super::dto::{
    MemberList, MemberRemoved, MembersAdded, MembersQuery, NewMembers, RoomRule, SetRule,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query};
use super::responses::BackendUnavailable;
use crate::comet_calls::call_comet;
use crate::state::LogicState;

/// How long one comet may take to take the removed member out.
const REMOVE_CALL: Duration = Duration::from_secs(2);
/// Members listed per page at most, and by default.
const MAX_MEMBERS_PAGE: usize = 1_000;
const DEFAULT_MEMBERS_PAGE: usize = 100;

fn valid_room(room: &str) -> Result<(), ApiError> {
    names::check_room(room).map_err(|e| ApiError::invalid(format!("room: {e}")))
}

fn valid_uid(uid: &str) -> Result<(), ApiError> {
    names::check_uid(uid).map_err(|e| ApiError::invalid(format!("uid: {e}")))
}

/// `PUT /rooms/{room}`.
#[utoipa::path(
    put,
    path = "/api/v1/rooms/{room}",
    operation_id = "set_room_rule",
    tag = "rooms",
    security(("api_key" = ["rooms"])),
    params(("room" = String, Path, description = "The room: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
    request_body = SetRule,
    responses(
        (status = 200, description = "The room's own rule, applied to joins and sends from now on (within a second on every logic)", body = RoomRule),
        (status = 400, description = "An invalid room name", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `rooms` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over `body_limit`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A missing, mistyped or unknown field, or a rule that is not `open`, `members` or `app`", body = ErrorBody),
        BackendUnavailable,
    ),
)]
pub(crate) async fn set_rule(
    State(shared): State<Arc<LogicState>>,
    _: RoomsKey,
    Path(room): Path<String>,
    Json(body): Json<SetRule>,
) -> Result<axum::Json<RoomRule>, ApiError> {
    valid_room(&room)?;
    let rule = courier_cluster::JoinRule::from(body.join);
    shared.rooms.set_rule(&room, rule).await?;
    tracing::info!(%room, rule = rule.as_str(), "room rule set");
    Ok(axum::Json(RoomRule {
        room,
        join: body.join,
        own: true,
    }))
}

/// `GET /rooms/{room}`.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}",
    operation_id = "room_rule",
    tag = "rooms",
    security(("api_key" = ["read"])),
    params(("room" = String, Path, description = "The room: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
    responses(
        (status = 200, description = "The rule that applies to the room: its own, or the configured one", body = RoomRule),
        (status = 400, description = "An invalid room name", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `read` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        BackendUnavailable,
    ),
)]
pub(crate) async fn rule(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Path(room): Path<String>,
) -> Result<axum::Json<RoomRule>, ApiError> {
    valid_room(&room)?;
    let (rule, own) = shared.rooms.rule(&room).await?;
    Ok(axum::Json(RoomRule {
        room,
        join: rule.into(),
        own,
    }))
}

/// `POST /rooms/{room}/members`.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{room}/members",
    operation_id = "add_room_members",
    tag = "rooms",
    security(("api_key" = ["rooms"])),
    params(("room" = String, Path, description = "The room: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
    request_body = NewMembers,
    responses(
        (status = 200, description = "Added (uids that were members already count as none)", body = MembersAdded),
        (status = 400, description = "An invalid room name, `uids` empty or over 1000, or an invalid uid", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `rooms` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over `body_limit`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "A missing, mistyped or unknown field", body = ErrorBody),
        BackendUnavailable,
    ),
)]
pub(crate) async fn add_members(
    State(shared): State<Arc<LogicState>>,
    _: RoomsKey,
    Path(room): Path<String>,
    Json(body): Json<NewMembers>,
) -> Result<axum::Json<MembersAdded>, ApiError> {
    valid_room(&room)?;
    if body.uids.is_empty() || body.uids.len() > MAX_MEMBERS_PER_CALL {
        return Err(ApiError::invalid(format!(
            "uids must name 1-{MAX_MEMBERS_PER_CALL} users"
        )));
    }
    body.uids.iter().try_for_each(|uid| valid_uid(uid))?;
    let added = shared.rooms.store().add_members(&room, &body.uids).await?;
    Ok(axum::Json(MembersAdded { room, added }))
}

/// `DELETE /rooms/{room}/members/{uid}`.
#[utoipa::path(
    delete,
    path = "/api/v1/rooms/{room}/members/{uid}",
    operation_id = "remove_room_member",
    tag = "rooms",
    security(("api_key" = ["rooms"])),
    params(
        ("room" = String, Path, description = "The room: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"),
        ("uid" = String, Path, description = "The member: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"),
    ),
    responses(
        (status = 200, description = "No longer a member; its connections in the room were taken out on every comet that answered", body = MemberRemoved),
        (status = 400, description = "An invalid room name or uid", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `rooms` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        BackendUnavailable,
    ),
)]
pub(crate) async fn remove_member(
    State(shared): State<Arc<LogicState>>,
    _: RoomsKey,
    Path((room, uid)): Path<(String, String)>,
) -> Result<axum::Json<MemberRemoved>, ApiError> {
    valid_room(&room)?;
    valid_uid(&uid)?;
    let was_member = shared.rooms.store().remove_member(&room, &uid).await?;
    let comets = shared.sessions.room_comets(&room).await?;
    let calls = comets.into_iter().map(|comet_id| {
        let (shared, room, uid) = (&shared, room.clone(), uid.clone());
        async move {
            let Some(comet) = shared.comets.find(&comet_id) else {
                return 0;
            };
            let request = RemoveFromRoomRequest {
                room,
                uids: vec![uid],
            };
            let call = call_comet(shared, &comet.grpc, REMOVE_CALL, |mut c| async move {
                c.remove_from_room(request).await
            });
            match call.await {
                Ok(reply) => reply.removed,
                Err(e) => {
                    tracing::warn!(comet = %comet_id, error = %e, "cannot take a removed member out of a room on this comet");
                    0
                }
            }
        }
    });
    let connections: u32 = futures::future::join_all(calls).await.into_iter().sum();
    tracing::info!(%room, %uid, was_member, connections, "room member removed");
    Ok(axum::Json(MemberRemoved {
        room,
        uid,
        was_member,
        connections,
    }))
}

/// `GET /rooms/{room}/members`.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}/members",
    operation_id = "room_members",
    tag = "rooms",
    security(("api_key" = ["read"])),
    params(("room" = String, Path, description = "The room: 1-64 bytes, no control characters", min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"), MembersQuery),
    responses(
        (status = 200, description = "A page of members in uid order", body = MemberList),
        (status = 400, description = "An invalid room name, `after` not a valid uid, `limit` out of range, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No API key, or one without the `read` scope", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        BackendUnavailable,
    ),
)]
pub(crate) async fn members(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Path(room): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<axum::Json<MemberList>, ApiError> {
    valid_room(&room)?;
    let after = query.after.unwrap_or_default();
    if !after.is_empty() {
        valid_uid(&after)?;
    }
    let limit = query.limit.unwrap_or(DEFAULT_MEMBERS_PAGE);
    if !(1..=MAX_MEMBERS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1-{MAX_MEMBERS_PAGE}"
        )));
    }
    let members = shared.rooms.store().members(&room, &after, limit).await?;
    let next_after = (members.len() == limit)
        .then(|| members.last().cloned())
        .flatten();
    Ok(axum::Json(MemberList {
        room,
        members,
        next_after,
    }))
}
