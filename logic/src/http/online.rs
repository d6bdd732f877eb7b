//! Read routes: online counts and listings (a `read` key), the presence of
//! named users and the comet ranking (a `read` key or a user's token).

use std::sync::Arc;

use axum::extract::State;

use super::auth::{ReadKey, UserOrReader};
use super::dto::{
    CometOnline, NodeInfo, OnlineReply, OnlineUsers, Presence, PresenceQuery, RoomOnline, TopQuery,
    TopRooms, UsersPage,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use super::responses::{BackendUnavailable, ReadUnauthorized, UserOrReaderFailures};
use crate::state::LogicState;

/// Default and largest page of `GET /online/users`.
const USERS_PAGE: usize = 100;
const MAX_USERS_PAGE: usize = 1000;
/// Default and largest `top` of `GET /online/rooms`.
const TOP_ROOMS: usize = 10;
const MAX_TOP_ROOMS: usize = 1000;

/// `GET /online`: cluster-wide counts.
#[utoipa::path(
    get,
    path = "/api/v1/online",
    operation_id = "online",
    tag = "online",
    security(("api_key" = ["read"])),
    responses(
        (status = 200, description = "Cluster-wide counts", body = OnlineReply),
        ReadUnauthorized,
        BackendUnavailable,
    ),
)]
pub(crate) async fn online(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
) -> Result<axum::Json<OnlineReply>, ApiError> {
    let online = shared.sessions.online().await?;
    Ok(axum::Json(OnlineReply {
        connections: online.connections,
        users: online.users,
        comets: online
            .comets
            .into_iter()
            .map(|(id, connections)| CometOnline { id, connections })
            .collect(),
    }))
}

/// `GET /online/users?cursor=&limit=`: online uids, sorted, paged.
#[utoipa::path(
    get,
    path = "/api/v1/online/users",
    operation_id = "online_users",
    tag = "online",
    security(("api_key" = ["read"])),
    params(UsersPage),
    responses(
        (status = 200, description = "A page of online uids, sorted", body = OnlineUsers),
        (status = 400, description = "A bad query, or `limit` out of 1-1000", body = ErrorBody),
        ReadUnauthorized,
        BackendUnavailable,
    ),
)]
pub(crate) async fn users(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Query(page): Query<UsersPage>,
) -> Result<axum::Json<OnlineUsers>, ApiError> {
    let limit = page.limit.unwrap_or(USERS_PAGE);
    if !(1..=MAX_USERS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1-{MAX_USERS_PAGE}"
        )));
    }
    let (users, next_cursor) = shared.sessions.online_users(&page.cursor, limit).await?;
    Ok(axum::Json(OnlineUsers { users, next_cursor }))
}

/// `GET /online/rooms/{room}`: connections in one room.
#[utoipa::path(
    get,
    path = "/api/v1/online/rooms/{room}",
    operation_id = "online_room",
    tag = "online",
    security(("api_key" = ["read"])),
    params(("room" = String, Path, description = "The room")),
    responses(
        (status = 200, description = "Connections in the room", body = RoomOnline),
        (status = 400, description = "A path that is not valid UTF-8", body = ErrorBody),
        ReadUnauthorized,
        BackendUnavailable,
    ),
)]
pub(crate) async fn room(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Path(room): Path<String>,
) -> Result<axum::Json<RoomOnline>, ApiError> {
    let connections = shared.room_counts.room(&room).await?;
    Ok(axum::Json(RoomOnline { room, connections }))
}

/// `GET /online/rooms?top=N`: the busiest rooms.
#[utoipa::path(
    get,
    path = "/api/v1/online/rooms",
    operation_id = "online_top_rooms",
    tag = "online",
    security(("api_key" = ["read"])),
    params(TopQuery),
    responses(
        (status = 200, description = "The busiest rooms, busiest first", body = TopRooms),
        (status = 400, description = "A bad query, or `top` out of 1-1000", body = ErrorBody),
        ReadUnauthorized,
        BackendUnavailable,
    ),
)]
pub(crate) async fn top_rooms(
    State(shared): State<Arc<LogicState>>,
    _: ReadKey,
    Query(query): Query<TopQuery>,
) -> Result<axum::Json<TopRooms>, ApiError> {
    let top = query.top.unwrap_or(TOP_ROOMS);
    if !(1..=MAX_TOP_ROOMS).contains(&top) {
        return Err(ApiError::invalid(format!("top must be 1-{MAX_TOP_ROOMS}")));
    }
    let rooms = shared
        .sessions
        .top_rooms(top)
        .await?
        .into_iter()
        .map(|(room, connections)| RoomOnline { room, connections })
        .collect();
    Ok(axum::Json(TopRooms { rooms }))
}

/// Most uids one `GET /presence` may name.
const MAX_PRESENCE: usize = 100;
/// Session-store reads one presence request runs at once.
const PRESENCE_FANOUT: usize = 16;

/// `GET /presence?uids=a,b,c`: which of the named users are online.
#[utoipa::path(
    get,
    path = "/api/v1/presence",
    operation_id = "presence",
    tag = "online",
    security(("api_key" = ["read"]), ("user_token" = [])),
    params(PresenceQuery),
    responses(
        (status = 200, description = "The named users that are online, in the order named", body = Presence),
        (status = 400, description = "A bad query, `uids` naming no user or over 100, or an invalid uid", body = ErrorBody),
        UserOrReaderFailures,
        BackendUnavailable,
    ),
)]
pub(crate) async fn presence(
    State(shared): State<Arc<LogicState>>,
    _: UserOrReader,
    Query(query): Query<PresenceQuery>,
) -> Result<axum::Json<Presence>, ApiError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let uids: Vec<String> = query
        .uids
        .split(',')
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if uids.is_empty() || uids.len() > MAX_PRESENCE {
        return Err(ApiError::invalid(format!(
            "uids must name 1-{MAX_PRESENCE} users, comma-separated"
        )));
    }
    for uid in &uids {
        courier_proto::names::check_uid(uid).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let online: Vec<String> = futures::stream::iter(uids)
        .map(|uid| {
            let sessions = shared.sessions.clone();
            async move {
                let live = !sessions.user_sessions(&uid).await?.is_empty();
                Ok::<_, courier_cluster::Error>(live.then_some(uid))
            }
        })
        .buffered(PRESENCE_FANOUT)
        .try_filter_map(|uid| async move { Ok(uid) })
        .try_collect()
        .await?;
    Ok(axum::Json(Presence { online }))
}

/// `GET /nodes`: comets ranked for a new client.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    operation_id = "nodes",
    tag = "online",
    security(("api_key" = ["read"]), ("user_token" = [])),
    responses(
        (status = 200, description = "Comets ranked for a new client, best first", body = Vec<NodeInfo>),
        UserOrReaderFailures,
    ),
)]
pub(crate) async fn nodes(
    State(shared): State<Arc<LogicState>>,
    _: UserOrReader,
) -> axum::Json<Vec<NodeInfo>> {
    axum::Json(shared.comets.ranked().iter().map(NodeInfo::from).collect())
}
