//! The comet's tests: real TCP on 127.0.0.1:0 or in-memory duplex streams,
//! memory discovery and an in-test logic. No external backend is needed.

mod handshake;
mod lifecycle;
mod push;
mod rooms;
mod session;
mod streams;
mod support;
mod tokens;
mod ws;
