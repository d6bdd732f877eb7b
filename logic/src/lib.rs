//! Courier's logic: the HTTP API backends and users call, the gRPC service
//! comets call, authentication, and the one place recipients are resolved and
//! messages published.
//!
//! Logic is stateless: every fact lives in the cluster backends
//! ([`courier_cluster::Backends`]), so any number of logics can run behind a
//! load balancer. It is the only writer of the session store; comets tell it
//! about connections over gRPC, and it turns every push into queue envelopes
//! that already name the comets (and keys) to deliver to, so job only
//! delivers.
//!
//! Decisions the design left open:
//!
//! - Usernames are the uid: 1-64 bytes of `[A-Za-z0-9_.-]`. Passwords are
//!   6-128 bytes (the cap bounds hashing work per request).
//! - A push's `op` is optional and defaults to 0; `data` is required (any
//!   JSON value, `null` included) and travels as its JSON text.
//! - A push naming one uid or key carries `to = user/key`; one naming several
//!   carries no `to`, since one envelope per comet serves them all.
//! - API keys are scoped (`push`, `read`, `admin`; see `keys`). A user
//!   token reads only `/presence` (named users) and `/nodes`.
//! - With no API key configured the keyed routes refuse every request; an
//!   empty `jwt_secret` is refused at bind.
//!
//! Modules: `config` (data), `server` (bind/run), `http` (routes, auth,
//! errors, DTOs), `grpc` (the comet-facing service), `publish` (resolution
//! and envelopes), `accounts` (register/login, argon2), `policy` (login
//! policy), `nodes` (the ranked comet view), `resync` (noticing a session
//! store that lost writes or does not answer), `queue_watch` (readiness and
//! a resync when the queue lost or could not take messages), `store_watch`
//! (readiness while a store shard has no primary), `room_counts` (room head counts
//! from a snapshot read at most once a second), `comet_calls` (calls to a
//! comet), `state` (what they share).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub use keys::{ApiKeyConfig, Scope};

mod accounts;
mod comet_calls;
mod config;
mod departures;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod hooks;
mod http;
mod keys;
mod metrics;
mod nodes;
mod policy;
mod publish;
mod queue_watch;
mod resync;
mod revocations;
mod room_access;
mod room_counts;
mod senders;
mod server;
mod state;
mod store_watch;
mod streams;

pub use self::metrics::describe as describe_metrics;
pub use config::{LogicConfig, LoginPolicy, PrefixRule, RoomRulesConfig};
pub use error::LogicError;
pub use hooks::{Hook, HooksConfig, OfflineHook, OnFailure};
pub use server::{serve, Logic};
