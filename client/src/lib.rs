//! Courier's client SDK and terminal chat.
//!
//! [`Client::connect`] logs in over HTTP, opens one TCP connection to the best
//! comet and hands back a cheap [`Client`] handle plus an [`Events`] channel.
//! A background driver task owns the socket: it matches replies to requests,
//! keeps the heartbeat, drops duplicate messages, and reconnects (preferring
//! another comet) with a jittered backoff when the connection is lost.
//!
//! [`raw::RawConnection`] speaks frames directly for tests; [`chat`] is the
//! terminal UI behind `courier chat`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backoff;
pub mod chat;
mod client;
mod config;
mod dedup;
mod driver;
mod error;
mod events;
mod http;
pub mod raw;
mod session;

pub use client::Client;
pub use config::{ClientConfig, CLIENT_MAX_FRAME};
pub use courier_proto::client::{Message, SendReply};
pub use error::ClientError;
pub use events::{Event, Events};
pub use http::{login, register, CometAddr, LoginReply};
