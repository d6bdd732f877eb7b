//! The body and reply of `POST /push/batch`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Most pushes one `POST /push/batch` carries.
pub(crate) const MAX_BATCH: usize = 500;

/// Where one push of a batch goes: exactly one of `users`, `keys`, `room`
/// and `all`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchTarget {
    /// Every connection of each user; stored in each inbox (as
    /// `POST /push/users`): 1 to `max_recipients` uids.
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) users: Option<Vec<String>>,
    /// These connections (as `POST /push/keys`).
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) keys: Option<Vec<String>>,
    /// Every member of a room (as `POST /push/rooms/{room}`).
    #[schema(min_length = 1, max_length = 64)]
    pub(crate) room: Option<String>,
    /// Everyone (as `POST /push/all`).
    pub(crate) all: Option<BatchAll>,
}

/// `to.all` of a batched push.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchAll {
    /// Connections per second per comet (0 = no limit).
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) rate: u32,
}

/// One push of `POST /push/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchPush {
    pub(crate) to: BatchTarget,
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub(crate) op: u32,
    /// Any JSON value; delivered as its JSON text, byte for byte.
    #[schema(value_type = Value)]
    pub(crate) data: Box<RawValue>,
    /// This push's own `Idempotency-Key` (1-128 visible ASCII), scoped to
    /// the API key like the header.
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    pub(crate) idempotency_key: Option<String>,
}

/// `POST /push/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushBatch {
    /// 1-500 independent pushes.
    #[schema(min_items = 1, max_items = 500)]
    pub(crate) pushes: Vec<BatchPush>,
}

/// What became of one push of a batch: `status` is what the push alone
/// would have been answered (202, or its error's status), with the same
/// fields.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchResult {
    #[schema(format = Int32)]
    pub(crate) status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) repeats: Option<usize>,
    /// `{"code", "message"}` when the push was not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) error: Option<serde_json::Value>,
}

/// `200` of `POST /push/batch`: one result per push, in order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchPushed {
    pub(crate) results: Vec<BatchResult>,
}
