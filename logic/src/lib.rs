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
//! Modules: [`config`] (data), `server` (bind/run), `http` (routes, auth,
//! errors, DTOs), `grpc` (the comet-facing service), `publish` (resolution
//! and envelopes), `accounts` (register/login, argon2), `policy` (login
//! policy), `nodes` (the ranked comet view), `state` (what they share).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
mod accounts;
mod error;
mod grpc;
mod http;
mod nodes;
mod policy;
mod publish;
mod server;
mod state;

pub use config::{LoginPolicy, LogicConfig};
pub use error::LogicError;
pub use server::{serve, Logic, DRAIN_DEADLINE};
