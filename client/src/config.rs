//! Client configuration: plain data, built by the caller (the chat, the bench,
//! tests) and handed to [`crate::Client::connect`]. Nothing is read from the
//! environment here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use courier_proto::Position;

use crate::transport::{Connector, WebSocket};

/// Largest frame the client accepts. Bigger than the comet's default 64 KiB
/// because the server may push batches of messages in one frame.
pub const CLIENT_MAX_FRAME: usize = 1024 * 1024;

/// Everything a [`crate::Client`] needs to log in and stay connected.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Logic's base URL, e.g. `http://127.0.0.1:3111`.
    pub server: String,
    /// The account name to log in with.
    pub username: String,
    /// The account password.
    pub password: String,
    /// Rooms joined at auth, and re-joined on every reconnect.
    pub rooms: Vec<String>,
    /// Shortest wait before a reconnect attempt.
    pub reconnect_min: Duration,
    /// Longest wait before a reconnect attempt.
    pub reconnect_max: Duration,
    /// How long a request (frame round trip or HTTP call) may take, including
    /// waiting for a reconnect.
    pub request_timeout: Duration,
    /// Largest frame accepted from the comet.
    pub max_frame: usize,
    /// How connections to comets are opened (TCP by default).
    pub connector: Connector,
    /// Where in the inbox to resume: the last position this application
    /// showed and kept (`Client::position`). `None` starts after the
    /// user's acknowledged position.
    pub resume_from: Option<Position>,
    /// This device's id, sent at auth (1-64 of `[A-Za-z0-9._-]`). With the
    /// `reject_new` login policy, a new connection of the same device
    /// replaces its old one (say, half-open after a network switch) instead
    /// of being refused. Default: random per config, so one `Client` is one
    /// device; set a stable id to be the same device across restarts.
    pub device: String,
    /// A PEM file of the CA that signed logic's and the comets'
    /// certificates, when they are not publicly trusted (`with_tls`).
    pub tls_ca: Option<PathBuf>,
}

impl ClientConfig {
    /// A config with the defaults: no rooms, reconnect between 200 ms and 10 s,
    /// 10 s request timeout, 1 MiB frames, TCP.
    pub fn new(
        server: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            server: server.into(),
            username: username.into(),
            password: password.into(),
            rooms: Vec::new(),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_frame: CLIENT_MAX_FRAME,
            connector: Connector::tcp(),
            resume_from: None,
            device: format!("dev-{:016x}", rand::random::<u64>()),
            tls_ca: None,
        }
    }

    /// The same config speaking TLS to the comets, and trusting `ca` (a PEM
    /// file) for them and for logic's `https` URL; `None` trusts the
    /// public web roots.
    pub fn with_tls(mut self, ca: Option<&Path>) -> std::io::Result<Self> {
        self.connector = Connector::tls(ca)?;
        self.tls_ca = ca.map(Path::to_path_buf);
        Ok(self)
    }

    /// The same config speaking WebSocket to the comets, at the `ws` URL
    /// logic gives for each (comets that serve none are skipped), with
    /// this config's `max_frame`. `wss://` URLs are verified against
    /// `tls_ca` (so call [`with_tls`](Self::with_tls) first to trust a
    /// private CA), or the public web roots when it is `None`. Fails when
    /// `tls_ca` cannot be read.
    pub fn with_websocket(mut self) -> std::io::Result<Self> {
        let ws = WebSocket::new()
            .with_max_frame(self.max_frame)
            .with_ca(self.tls_ca.as_deref())?;
        self.connector = Connector::new(ws);
        Ok(self)
    }

    /// The same config, opening connections with `connector`.
    pub fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = connector;
        self
    }

    /// The same config with these rooms to join at auth.
    pub fn with_rooms<I, S>(mut self, rooms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rooms = rooms.into_iter().map(Into::into).collect();
        self
    }
}
