//! The cluster's shared state, behind traits, and the plumbing every service
//! shares.
//!
//! One module per concern. Each state trait has an in-process `memory://`
//! implementation (the embedded default of `courier up`) and a real one
//! chosen by URL scheme:
//!
//! | trait | memory | real |
//! |---|---|---|
//! | [`Sessions`] | `memory://` | `redis://host:port` (single or cluster) |
//! | [`Accounts`] | `memory://` | `redis://host:port` |
//! | [`Queue`] | `memory://` | `kafka://host:port/topic` |
//! | [`Discovery`] | `memory://` | `etcd://host:port` |
//!
//! The same contract-test suite (`tests/contract_*.rs`) runs against both.

pub mod accounts;
pub mod admin;
pub mod backends;
pub mod config;
pub mod discovery;
pub mod error;
pub mod net;
pub mod queue;
pub mod sessions;
pub mod shutdown;
pub mod telemetry;
pub mod token;

pub use accounts::{Account, Accounts};
pub use backends::{BackendUrls, Backends};
pub use discovery::{CometNode, Discovery, LogicNode, NodeState, Registration, ServiceKind};
pub use error::{Error, Result};
pub use queue::{Consumer, ConsumerEvent, Delivery, Queue};
pub use sessions::{CometReport, Online, Session, SessionOptions, Sessions};
pub use token::{Claims, TokenError, TokenKeys};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
