//! Read-only admin routes: online counts and the comet ranking.

use std::sync::Arc;

use axum::extract::State;

use super::auth::AdminReader;
use super::dto::{
    CometOnline, NodeInfo, OnlineReply, OnlineUsers, RoomOnline, TopQuery, TopRooms, UsersPage,
};
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::state::LogicState;

/// Default and largest page of `GET /online/users`.
const USERS_PAGE: usize = 100;
const MAX_USERS_PAGE: usize = 1000;
/// Default and largest `top` of `GET /online/rooms`.
const TOP_ROOMS: usize = 10;
const MAX_TOP_ROOMS: usize = 1000;

/// `GET /online`: cluster-wide counts.
pub(crate) async fn online(
    State(shared): State<Arc<LogicState>>,
    _: AdminReader,
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
pub(crate) async fn users(
    State(shared): State<Arc<LogicState>>,
    _: AdminReader,
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
pub(crate) async fn room(
    State(shared): State<Arc<LogicState>>,
    _: AdminReader,
    Path(room): Path<String>,
) -> Result<axum::Json<RoomOnline>, ApiError> {
    let connections = shared.sessions.room_online(&room).await?;
    Ok(axum::Json(RoomOnline { room, connections }))
}

/// `GET /online/rooms?top=N`: the busiest rooms.
pub(crate) async fn top_rooms(
    State(shared): State<Arc<LogicState>>,
    _: AdminReader,
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

/// `GET /nodes`: comets ranked for a new client.
pub(crate) async fn nodes(
    State(shared): State<Arc<LogicState>>,
    _: AdminReader,
) -> axum::Json<Vec<NodeInfo>> {
    axum::Json(shared.comets.ranked().iter().map(NodeInfo::from).collect())
}
