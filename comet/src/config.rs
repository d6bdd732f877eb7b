//! The comet's configuration: plain data, every limit with a safe default.
//!
//! Tests and `courier up` build this struct directly; the binary layers a
//! TOML file and `COURIER_COMET__*` variables over [`CometConfig::default`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How one comet listens, and the limits it enforces on every connection.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CometConfig {
    /// This comet's id in discovery and in connection keys
    /// (default: `comet-` and a short random suffix).
    pub id: String,
    /// Where clients connect over TCP (default `127.0.0.1:3101`).
    pub tcp_addr: SocketAddr,
    /// Where browsers and other WebSocket clients connect, at path `/ws`
    /// (default `127.0.0.1:3102`; `wss://` when `tls` is set). `None`
    /// (`""` in a config file) serves no WebSocket.
    #[serde(with = "courier_runtime::net::optional_addr")]
    #[schemars(with = "Option<String>")]
    pub ws_addr: Option<SocketAddr>,
    /// Origins allowed to open a WebSocket, e.g. `https://chat.example.com`
    /// (default: empty, any origin). A request without an `Origin` header
    /// (not from a browser) is not checked: the token in `Auth` is what
    /// authenticates, never a cookie.
    pub ws_origins: Vec<String>,
    /// Where job calls the push service (default `127.0.0.1:3109`).
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (default
    /// `127.0.0.1:3103`; port 0 picks one). `None` (`""` in a config file)
    /// serves none of them.
    #[serde(with = "courier_runtime::net::optional_addr")]
    #[schemars(with = "Option<String>")]
    pub admin_addr: Option<SocketAddr>,
    /// The host written to discovery; default: the bound IP, or `127.0.0.1`
    /// when bound to an unspecified address.
    pub advertise_host: Option<String>,
    /// The `host:port` clients dial for TCP, when it is not the gRPC host's
    /// (a load balancer, a public name): e.g. `comet-3.chat.example.com:3101`.
    /// Default: `advertise_host` (or the bound IP) and `tcp_addr`'s port.
    pub public_tcp: Option<String>,
    /// The WebSocket URL clients dial, with scheme, host and path, when
    /// clients reach this comet through an ingress or a proxy: e.g.
    /// `wss://chat.example.com/ws/comet-3`. The comet accepts upgrades on
    /// its path as well as on `/ws`. Default: `ws://` (`wss://` with TLS),
    /// the advertised host, `ws_addr`'s port and `/ws`.
    pub public_ws_url: Option<String>,
    /// Relative share of new clients this comet should get (default 1).
    pub weight: u32,
    /// Largest frame body accepted from or sent to a client (default 64 KiB).
    pub max_frame: usize,
    /// How long a new connection may take to send its `Auth` frame (default 5 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub handshake_timeout: Duration,
    /// The heartbeat interval told to clients (default 30 s); a connection
    /// silent for three intervals is closed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub heartbeat: Duration,
    /// How often each connection's session is checked with logic (default
    /// 5 min; 0 = at every client heartbeat): logic restores a session it
    /// lost, the comet closes one a newer login ended, and the client
    /// learns its inbox head (so a message that never reached it is
    /// fetched). Other heartbeats are answered here, so an idle connection
    /// costs logic and the store one call per this interval, spread
    /// evenly.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub session_check: Duration,
    /// Largest frame accepted before the client has authenticated (default
    /// 8 KiB: an `Auth` with a token and `max_rooms` room names). A longer
    /// announced length ends the connection at once.
    pub max_auth_frame: usize,
    /// New connections accepted per second, with a burst of as many
    /// (default 10 000; 0 = no limit). More are answered `BUSY` and closed,
    /// so a reconnect storm is spread out instead of taking the comet down.
    pub accept_rate: u32,
    /// Connections that have not finished their handshake, at most, at once
    /// (default 4096); more are refused with `TOO_MANY_CONNECTIONS`.
    pub max_handshakes: usize,
    /// Connections from one address (IPv6: one /64) that have not finished
    /// their handshake, at most, at once (default 256).
    pub max_handshakes_per_ip: u32,
    /// Frames queued per connection (default 256); overflow disconnects the
    /// client as a slow consumer.
    pub outbound_queue: usize,
    /// Bytes queued per connection (default 4 MiB); overflow disconnects
    /// the client as a slow consumer, like `outbound_queue`.
    pub outbound_bytes: usize,
    /// A write blocked longer than this disconnects the client (default 10 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub write_timeout: Duration,
    /// Rooms one connection may be in at once (default 64).
    pub max_rooms: usize,
    /// Connections one client IP address (IPv6: one /64) may hold at once
    /// (default 10 000; 0 = no limit). High enough for carrier NAT, low enough that one host
    /// cannot take every file descriptor.
    pub max_connections_per_ip: u32,
    /// Upstream `Send` frames one connection may make per second, with a
    /// burst of as many (default 50; 0 = no limit). Faster sends get a
    /// `RATE_LIMITED` error frame and the connection stays open.
    pub send_rate: u32,
    /// `Join`, `Leave`, `RoomOnline` and `Refresh` frames one connection
    /// may make per second, with a burst of as many (default 20; 0 = no
    /// limit). Faster ones get a `RATE_LIMITED` error frame and the
    /// connection stays open.
    pub join_rate: u32,
    /// `Sync` pages one connection may ask for per second, with a burst of
    /// as many (default 100; 0 = no limit): each is a read of the store.
    /// Faster ones get a `RATE_LIMITED` error frame and the connection
    /// stays open; the SDK waits and asks again.
    pub sync_rate: u32,
    /// Connections a draining comet tells to reconnect elsewhere per second
    /// (default 1000), in waves every 100 ms.
    pub drain_rate: u32,
    /// Longest a drain takes (default 60 s): connections still open then are
    /// all told at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub drain_grace: Duration,
    /// How often load is reported to logic (`RenewOnline`) and to discovery
    /// (default 5 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub report_interval: Duration,
    /// HS256 secret shared with logic, used to verify login tokens. Required.
    pub jwt_secret: String,
    /// The secret every call between Courier's services carries: the push
    /// service refuses calls without it, and calls to logic carry it.
    /// Required.
    pub cluster_secret: String,
    /// TLS of the client listener and the push service (`cert`, `key`), and
    /// of the calls to logic (`ca`). Empty: plaintext.
    pub tls: courier_runtime::TlsConfig,
}

impl Default for CometConfig {
    fn default() -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Self {
            id: format!("comet-{}", &suffix[..8]),
            tcp_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3101),
            ws_addr: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3102)),
            ws_origins: Vec::new(),
            grpc_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3109),
            admin_addr: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3103)),
            advertise_host: None,
            public_tcp: None,
            public_ws_url: None,
            weight: 1,
            max_frame: courier_proto::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(30),
            session_check: Duration::from_secs(300),
            max_auth_frame: 8 * 1024,
            accept_rate: 10_000,
            max_handshakes: 4096,
            max_handshakes_per_ip: 256,
            outbound_queue: 256,
            outbound_bytes: 4 * 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            max_rooms: 64,
            max_connections_per_ip: 10_000,
            send_rate: 50,
            join_rate: 20,
            sync_rate: 100,
            drain_rate: 1000,
            drain_grace: Duration::from_secs(60),
            report_interval: Duration::from_secs(5),
            jwt_secret: String::new(),
            cluster_secret: String::new(),
            tls: courier_runtime::TlsConfig::default(),
        }
    }
}

/// Longest public address, in bytes.
const MAX_PUBLIC_ADDR: usize = 256;

/// Checks a `host:port` clients dial.
fn check_public_tcp(addr: &str) -> Result<(), String> {
    if addr.len() > MAX_PUBLIC_ADDR || addr.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{addr:?} is not a host:port"));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("{addr:?} is not a host:port")),
    }
}

/// The path of a public WebSocket URL, checked: `ws://` or `wss://`, a
/// host, a path (`/` when none).
pub(crate) fn public_ws_path(url: &str) -> Result<String, String> {
    if url.len() > MAX_PUBLIC_ADDR || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{url:?} is not a WebSocket URL"));
    }
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("ws" | "wss")) {
        return Err(format!("{url:?} is not a ws:// or wss:// URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host"));
    }
    Ok(uri.path().to_owned())
}

impl CometConfig {
    /// Checks the values that would make the comet misbehave rather than
    /// merely be slow.
    pub fn validate(&self) -> Result<(), String> {
        // Connection keys start with the id, and logic checks both.
        courier_proto::names::check_comet_id(&self.id).map_err(|e| format!("id: {e}"))?;
        if self.jwt_secret.len() < courier_runtime::MIN_SECRET_BYTES {
            return Err(format!(
                "jwt_secret must be set, at least {} bytes (shared with logic)",
                courier_runtime::MIN_SECRET_BYTES
            ));
        }
        courier_runtime::ClusterSecret::new(&self.cluster_secret)
            .map_err(|e| format!("cluster_secret: {e}"))?;
        self.tls.validate().map_err(|e| format!("tls: {e}"))?;
        if let Some(tcp) = &self.public_tcp {
            check_public_tcp(tcp).map_err(|e| format!("public_tcp: {e}"))?;
        }
        if let Some(url) = &self.public_ws_url {
            public_ws_path(url).map_err(|e| format!("public_ws_url: {e}"))?;
        }
        if self.max_frame < 64 {
            return Err(format!("max_frame {} is too small", self.max_frame));
        }
        if self.outbound_queue == 0 {
            return Err("outbound_queue must be at least 1".into());
        }
        if self.outbound_bytes < self.max_frame {
            return Err(format!(
                "outbound_bytes {} must hold at least one max_frame ({})",
                self.outbound_bytes, self.max_frame
            ));
        }
        if !(64..=self.max_frame).contains(&self.max_auth_frame) {
            return Err(format!(
                "max_auth_frame {} must be between 64 and max_frame ({})",
                self.max_auth_frame, self.max_frame
            ));
        }
        if self.max_handshakes == 0 || self.max_handshakes_per_ip == 0 {
            return Err("max_handshakes and max_handshakes_per_ip must be at least 1".into());
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("heartbeat", self.heartbeat),
            ("write_timeout", self.write_timeout),
            ("report_interval", self.report_interval),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }

    /// Silence after which a connection is closed.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.heartbeat.saturating_mul(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = CometConfig::default();
        assert!(c.id.starts_with("comet-") && c.id.len() == 14);
        assert_eq!(c.tcp_addr.port(), 3101);
        assert_eq!(c.grpc_addr.port(), 3109);
        assert_eq!(c.admin_addr.map(|a| a.port()), Some(3103));
        assert_eq!(c.max_frame, 64 * 1024);
        assert_eq!(c.idle_timeout(), Duration::from_secs(90));
        assert!(c.validate().is_err(), "no secret by default");
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        let with = |jwt: &str, cluster: &str| CometConfig {
            jwt_secret: jwt.into(),
            cluster_secret: cluster.into(),
            ..CometConfig::default()
        };
        let (short, long) = ("x".repeat(31), "x".repeat(32));
        let refused = with(&short, &long).validate().unwrap_err();
        assert!(
            refused.contains("jwt_secret") && refused.contains("32"),
            "{refused}"
        );
        let refused = with(&long, &short).validate().unwrap_err();
        assert!(
            refused.contains("cluster_secret") && refused.contains("32"),
            "{refused}"
        );
        assert_eq!(with(&long, &long).validate(), Ok(()));
    }

    #[test]
    fn durations_parse_from_humantime() {
        let c: CometConfig =
            serde_json::from_str(r#"{"heartbeat":"10s","jwt_secret":"s"}"#).unwrap();
        assert_eq!(c.heartbeat, Duration::from_secs(10));
        assert!(serde_json::from_str::<CometConfig>(r#"{"nope":1}"#).is_err());
        let c: CometConfig = serde_json::from_str(r#"{"admin_addr":""}"#).unwrap();
        assert_eq!(c.admin_addr, None);
    }
}
