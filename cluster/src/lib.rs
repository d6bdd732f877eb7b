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
//! | [`Sessions`] | `memory://` | `redis://host:port` (single or cluster) | `redis` |
//! | [`Accounts`] | `memory://` | `redis://host:port` | `redis` |
//! | [`Inbox`] | `memory://` | `redis://host:port` (the session store's URL) | `redis` |
//! | [`Queue`] | `memory://` | `kafka://host:port/topic` | `kafka` |
//! | [`Discovery`] | `memory://` | `etcd://host:port` | `etcd` |
//!
//! The same contract-test suite (`tests/contract_*.rs`) runs against both.

pub mod accounts;
pub mod backends;
pub mod config;
pub mod discovery;
pub mod error;
pub mod inbox;
pub mod queue;
pub mod sessions;

pub use accounts::{Account, Accounts};
pub use backends::Backends;
pub use config::ClusterConfig;
pub use discovery::{CometNode, Discovery, LogicNode, NodeState, Registration, ServiceKind};
pub use error::{Error, Result};
pub use inbox::{Inbox, InboxOptions};
pub use queue::{Consumer, ConsumerEvent, Delivery, Queue};
pub use sessions::{CometReport, Online, Session, SessionOptions, Sessions};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
