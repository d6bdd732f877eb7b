//! The cluster's shared state, behind traits.
//!
//! One module per concern. Each trait has an in-process `memory://`
//! implementation (the embedded default of `courier up`) and a real one
//! chosen by URL scheme, compiled in by a cargo feature (all on by
//! default; a service that only needs the traits, like comet, turns them
//! off and links no backend client):
//!
//! | trait | memory | real | feature |
//! |---|---|---|---|
//! | [`Sessions`] | `memory://` | `redis://host:port` (single or cluster; `rediss://` for TLS) | `redis` |
//! | [`Accounts`] | `memory://` | `postgres://...` (sharded, [`postgres`]) | `postgres` |
//! | [`Inbox`] | `memory://` | `postgres://...` (the same store) | `postgres` |
//! | [`RoomRules`] | `memory://` | `postgres://...` (the same store) | `postgres` |
//! | [`Queue`] | `memory://` | `kafka://host:port/topic` | `kafka` |
//! | [`Discovery`] | `memory://` | `etcd://host:port` (`etcds://` for TLS) | `etcd` |
//!
//! PostgreSQL is the store of record (accounts, every stored message,
//! rooms' rules and members);
//! Redis is a cache of who is connected where, which the comets can
//! rebuild. The same contract-test suite (`tests/contract_*.rs`) runs
//! against every backend of a trait.

pub mod accounts;
pub mod backends;
pub mod config;
pub mod discovery;
pub mod error;
pub mod inbox;
mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis;
pub mod rooms;
pub mod sessions;
pub mod store_admin;
pub mod tls;

pub use self::metrics::describe as describe_metrics;
pub use accounts::{Account, Accounts};
pub use backends::Backends;
pub use config::ClusterConfig;
pub use discovery::{CometNode, Discovery, LogicNode, NodeState, Registration, ServiceKind};
pub use error::{Error, Result};
pub use inbox::{Inbox, InboxOptions};
pub use queue::{Consumer, ConsumerEvent, Delivery, Queue};
pub use rooms::{JoinRule, RoomRules};
pub use sessions::{CometReport, Online, Session, SessionOptions, Sessions};
pub use store_admin::StoreAdmin;
pub use tls::BackendTls;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
