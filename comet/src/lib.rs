//! Courier's connection gateway: clients hold one long-lived connection to
//! a comet; job pushes to them through the comet's gRPC service.
//!
//! Shape, outside in:
//!
//! - [`Comet`] ([`server`](crate::Comet::run)) binds the TCP and gRPC
//!   listeners, registers in discovery and drains on shutdown.
//! - The accept loop only spawns; each connection task runs the handshake
//!   (`Auth` within `handshake_timeout`, token verified locally, session
//!   opened in logic), then reads frames while a writer task drains the
//!   connection's bounded outbox.
//! - The key index and the room index (the `directory`) are sharded maps
//!   of outboxes; the push service splices the messages logic encoded into
//!   `Push` frames once and queues the same bytes to every recipient. A
//!   client whose queue overflows is dropped, never buffered. A broadcast
//!   with a `rate` is queued in slices over time (`pacing`).
//! - Logic is called through a pool that follows discovery, with a deadline
//!   on every call; room changes and load are reported in the background.
//!
//! Nothing here blocks one connection on another, and nothing a client sends
//! can panic the comet: bad input gets an `Error` frame and a closed socket.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod closer;
mod config;
mod connection;
mod counters;
mod directory;
mod drain;
mod error;
mod latency;
mod limits;
mod listener;
mod logic_client;
mod opener;
mod outbox;
mod pacing;
mod push_service;
mod registry;
mod report;
mod resync;
mod revocations;
mod rooms;
mod server;
mod state;
mod ws;

#[cfg(test)]
mod tests;

pub use config::CometConfig;
pub use counters::describe as describe_metrics;
pub use error::CometError;
pub use server::{serve, Comet, CometDeps};
