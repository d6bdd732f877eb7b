//! The bodies of the room routes (`/rooms/{room}`, `/rooms/{room}/members`).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A room's join rule: who may join it, read its history and send to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Join {
    /// Anyone.
    Open,
    /// Listed members only.
    Members,
    /// Listed members, and whom the application's join hook admits.
    App,
}

impl From<Join> for courier_cluster::JoinRule {
    fn from(j: Join) -> Self {
        match j {
            Join::Open => Self::Open,
            Join::Members => Self::Members,
            Join::App => Self::App,
        }
    }
}

impl From<courier_cluster::JoinRule> for Join {
    fn from(r: courier_cluster::JoinRule) -> Self {
        match r {
            courier_cluster::JoinRule::Open => Self::Open,
            courier_cluster::JoinRule::Members => Self::Members,
            courier_cluster::JoinRule::App => Self::App,
        }
    }
}

/// `PUT /rooms/{room}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRule {
    pub(crate) join: Join,
}

/// The rule that applies to a room.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomRule {
    pub(crate) room: String,
    pub(crate) join: Join,
    /// The room's own rule (`PUT /rooms/{room}`), not the configured one.
    pub(crate) own: bool,
}

/// `POST /rooms/{room}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMembers {
    /// 1-1000 uids, each 1-64 bytes with no control characters.
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) uids: Vec<String>,
}

/// `200` of `POST /rooms/{room}/members`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MembersAdded {
    pub(crate) room: String,
    /// Uids that were not members before.
    pub(crate) added: usize,
}

/// `200` of `DELETE /rooms/{room}/members/{uid}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberRemoved {
    pub(crate) room: String,
    pub(crate) uid: String,
    /// Whether the uid was a member.
    pub(crate) was_member: bool,
    /// Its connections taken out of the room.
    pub(crate) connections: u32,
}

/// `GET /rooms/{room}/members` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MembersQuery {
    /// List members after this uid (`next_after` of the previous page).
    #[param(min_length = 1, max_length = 64)]
    pub(crate) after: Option<String>,
    /// Page size, 1-1000; 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<usize>,
}

/// `200` of `GET /rooms/{room}/members`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberList {
    pub(crate) room: String,
    /// In uid order.
    pub(crate) members: Vec<String>,
    /// Where the next page starts (`after`), if this one was full.
    pub(crate) next_after: Option<String>,
}
