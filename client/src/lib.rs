//! Courier's client SDK.
//!
//! [`Client::connect`] logs in over HTTP, opens one connection to the best
//! comet and hands back a cheap [`Client`] handle plus an [`Events`] channel.
//! A background driver task owns the connection: it matches replies to
//! requests, keeps the heartbeat, drops duplicate messages, and reconnects
//! (preferring another comet) with a jittered backoff when the connection
//! is lost.
//!
//! The connection runs over any byte stream: TCP by default, TLS, a
//! WebSocket ([`WebSocket`], [`ClientConfig::with_websocket`]), or whatever
//! [`Transport`] the config's [`Connector`] carries (an in-memory duplex in
//! tests). The SDK has no user interface; `courier chat` (crate
//! `courier-chat`) is built on it.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backoff;
mod client;
mod config;
mod dedup;
mod driver;
mod error;
mod events;
mod history;
mod http;
mod session;
mod state;
mod streams;
mod transport;

pub use client::Client;
pub use config::{ClientConfig, CLIENT_MAX_FRAME};
pub use courier_proto::client::{Message, SendReply};
pub use courier_proto::Position;
pub use error::ClientError;
pub use events::{Event, Events};
pub use history::History;
pub use http::{login, register, register_with, CometAddr, LoginReply};
pub use transport::{BoxStream, Connector, Stream, Tcp, Tls, Transport, WebSocket};
