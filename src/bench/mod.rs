//! `courier bench`: load generators whose numbers go in the README.
//!
//! - [`e2e`]: push -> receipt latency to one SDK client.
//! - [`fanout`]: room fan-out; many raw protocol connections in one room,
//!   room pushes over HTTP, deliveries counted and latency sampled.
//!
//! The generators that hold many connections speak the wire protocol
//! themselves with `courier_proto` (not the SDK), so one connection costs a
//! task, a socket and a reused read buffer, and the client side stays cheap
//! enough to load a comet on the same machine.

pub mod e2e;

pub use e2e::{e2e, E2eArgs};
