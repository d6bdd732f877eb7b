//! `courier bench`: load generators whose numbers go in the README.
//!
//! - [`conns`]: many idle authenticated connections; connect rate, memory
//!   per connection, backend load while idle, one push to all.
//! - [`e2e`]: push -> receipt latency to one SDK client.
//! - [`fanout`]: room fan-out; many raw protocol connections in one room,
//!   room pushes over HTTP, deliveries counted and latency sampled.
//! - [`peer`]: the fan-out workload against nats-server and Redis pub/sub,
//!   each started by the command, for comparison.
//! - [`push`]: the HTTP push API's requests/s and latency, next to an
//!   empty route's.
//! - [`history`]: paging back through a long stored history, pages/s.
//! - [`asks`]: many connections asking their room's head count, and what
//!   answering costs logic and Redis.
//!
//! The generators that hold many connections speak the wire protocol
//! themselves with `courier_proto` (not the SDK), so one connection costs a
//! task, a socket and a reused read buffer, and the client side stays cheap
//! enough to load a comet on the same machine. Their parts are modules of
//! their own so other generators can reuse them:
//!
//! - [`dial`]: many connections spread over loopback source addresses;
//! - [`wire`]: frame splitting, cheap `Push` counting, the frames a member sends;
//! - [`member`]: one authenticated connection that counts what it reads;
//! - [`members`]: a process's members, connected with bounded concurrency;
//! - [`latency`]: a histogram that crosses process boundaries;
//! - [`proc_stat`]: CPU and memory of a process, and the open-files limit.

pub mod asks;
pub mod conns;
pub mod dial;
pub mod e2e;
pub mod fanout;
pub mod history;
pub mod latency;
pub mod member;
pub mod members;
pub mod peer;
pub mod proc_stat;
pub mod push;
pub(crate) mod summary;
pub mod trust;
pub mod wire;

pub use asks::{asks, AsksArgs};
pub use conns::{conns, ConnsArgs};
pub use e2e::{e2e, E2eArgs};
pub use fanout::{fanout, FanoutArgs};
pub use history::{history, HistoryArgs};
pub use peer::{peer, PeerArgs};
pub use push::{push, PushArgs};
