//! Logic's configuration: plain data, passed in by the binary or a test.
//!
//! Every limit has a safe default so `LogicConfig::default()` with a secret
//! and an API key is a working service. Unknown fields are refused so a typo
//! in a TOML file fails loudly instead of being ignored.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use courier_cluster::JoinRule;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// What logic does when a user who is already online opens another session.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LoginPolicy {
    /// Every device may stay connected (the default).
    #[default]
    Multi,
    /// The new session wins: the user's other connections are kicked.
    KickOld,
    /// The old session wins: a new one is refused while one is live.
    RejectNew,
}

/// The join rule of rooms that have none of their own (see
/// `PUT /api/v1/rooms/{room}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RoomRulesConfig {
    /// The rule of a room no prefix matches (default `open`).
    pub default: JoinRule,
    /// Rules by room-name prefix; the longest prefix that matches wins.
    pub prefixes: Vec<PrefixRule>,
}

/// The rule of rooms whose name starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixRule {
    pub prefix: String,
    pub join: JoinRule,
}

impl RoomRulesConfig {
    /// The configured rule of `room`.
    pub(crate) fn of(&self, room: &str) -> JoinRule {
        self.prefixes
            .iter()
            .filter(|p| room.starts_with(&p.prefix))
            .max_by_key(|p| p.prefix.len())
            .map_or(self.default, |p| p.join)
    }
}

/// Logic's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogicConfig {
    /// This logic's id in discovery (default `logic-` and 8 random hex digits).
    pub id: String,
    /// Address of the HTTP API (default `127.0.0.1:3111`; port 0 picks one).
    pub http_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served for operators
    /// (default `127.0.0.1:3113`; port 0 picks one). `None` (`""` in a
    /// config file) serves none there; the probes stay on `http_addr`.
    #[serde(with = "courier_runtime::net::optional_addr")]
    #[schemars(with = "Option<String>")]
    pub admin_addr: Option<SocketAddr>,
    /// Address of the gRPC service for comets (default `127.0.0.1:3119`).
    pub grpc_addr: SocketAddr,
    /// Host written to discovery; defaults to the bound IP, or `127.0.0.1`
    /// when bound to an unspecified address (`0.0.0.0`, `::`).
    pub advertise_host: Option<String>,
    /// A Bearer key with every scope (push, read, admin), named `default`.
    /// Empty: only `api_keys` are accepted.
    pub api_key: String,
    /// Named API keys with scopes, for rotation without downtime and least
    /// privilege (see docs/security.md).
    pub api_keys: Vec<crate::keys::ApiKeyConfig>,
    /// `/presence` and `/nodes` reads one user's token may make per minute
    /// (default 60; 0 = no limit).
    pub user_reads_per_minute: u32,
    /// Join rules of rooms without one of their own.
    pub room_rules: RoomRulesConfig,
    /// The application's hooks (connect, join, publish, offline).
    pub hooks: crate::hooks::HooksConfig,
    /// Messages one user may send (`Send`, over all its connections) per
    /// minute, per logic node (default 3,000; 0 = no quota).
    pub send_quota_per_minute: u32,
    /// HMAC secret of login tokens; comets must share it. Required.
    pub jwt_secret: String,
    /// The secret every call between Courier's services carries: the gRPC
    /// service refuses calls without it. Required.
    pub cluster_secret: String,
    /// TLS of the HTTP API and the gRPC service (`cert`, `key`), and of the
    /// calls to comets (`ca`). Empty: plaintext.
    pub tls: courier_runtime::TlsConfig,
    /// Lifetime of a login token (default 24h).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub token_ttl: Duration,
    /// How often clients heartbeat (default 30s); returned at login and
    /// session open as `heartbeat_secs`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub heartbeat: Duration,
    /// What a second login of the same user does (default `multi`).
    pub login_policy: LoginPolicy,
    /// Largest accepted HTTP request body in bytes (default 64 KiB).
    pub body_limit: usize,
    /// HTTP connections open at once (default 10 000); one more is answered
    /// 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// HTTP connections one client (an IPv4 address, an IPv6 /64) may hold
    /// open at once (default 1 000; 0 = no limit); one more is answered 503
    /// with `Retry-After` and closed, so one client cannot take every
    /// connection `max_connections` allows.
    pub max_connections_per_ip: u32,
    /// Time a client has to send a request's head (default 10 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_read_timeout: Duration,
    /// Time a connection may send nothing, before its first request or
    /// between requests, before it is closed (default 60 s). Keep it above
    /// `request_timeout`: a connection waiting for its reply is idle too.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Time a request may take before it is answered 408 (default 30 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
    /// Register/login requests that may wait for a password hash at once
    /// (default 64); more are answered 503 with `Retry-After`.
    pub hash_queue: usize,
    /// Register/login requests allowed per client IP per minute, with a
    /// burst of as many (default 600, so an office behind one NAT address
    /// can log in at 9 am; 0 disables the limit).
    pub auth_rate_per_minute: u32,
    /// Logins of one username from one client IP per minute, with a burst of
    /// as many (default 10; 0 disables the limit): password guessing is
    /// slowed per account without locking out its other users' addresses.
    pub login_rate_per_user_per_minute: u32,
    /// Most uids or keys one push may name (default 1000).
    pub max_recipients: usize,
    /// Largest message `data`, in bytes (default 63 KiB). Keep it at least
    /// 1 KiB under the comets' `max_frame`, which must also hold the
    /// message's ids and addresses: a message that cannot fit a frame is
    /// refused here, before it is accepted, rather than dropped later.
    pub max_data: usize,
    /// How long a comet must be gone from discovery before logic forgets
    /// its room registrations (default 30 s; keep it above the lease TTL).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub comet_departure_grace: Duration,
}

impl Default for LogicConfig {
    fn default() -> Self {
        Self {
            id: format!("logic-{:08x}", rand::rng().random::<u32>()),
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 3111)),
            grpc_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 3119)),
            admin_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 3113))),
            advertise_host: None,
            api_key: String::new(),
            api_keys: Vec::new(),
            user_reads_per_minute: 60,
            send_quota_per_minute: 3_000,
            room_rules: RoomRulesConfig::default(),
            hooks: crate::hooks::HooksConfig::default(),
            jwt_secret: String::new(),
            cluster_secret: String::new(),
            tls: courier_runtime::TlsConfig::default(),
            token_ttl: Duration::from_secs(24 * 60 * 60),
            heartbeat: Duration::from_secs(30),
            login_policy: LoginPolicy::default(),
            body_limit: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            hash_queue: 64,
            auth_rate_per_minute: 600,
            login_rate_per_user_per_minute: 10,
            max_recipients: 1000,
            max_data: 63 * 1024,
            comet_departure_grace: Duration::from_secs(30),
        }
    }
}

impl LogicConfig {
    /// Checks the values logic cannot work without. No API key at all is
    /// allowed: the keyed routes then refuse every request.
    pub fn validate(&self) -> Result<(), String> {
        if self.jwt_secret.len() < courier_runtime::MIN_SECRET_BYTES {
            return Err(format!(
                "jwt_secret must be set, at least {} bytes (comets verify tokens with it)",
                courier_runtime::MIN_SECRET_BYTES
            ));
        }
        courier_runtime::ClusterSecret::new(&self.cluster_secret)
            .map_err(|e| format!("cluster_secret: {e}"))?;
        if self.id.is_empty() {
            return Err("id must not be empty".into());
        }
        crate::keys::ApiKeys::new(&self.api_key, &self.api_keys)?;
        self.hooks.validate()?;
        self.tls.validate().map_err(|e| format!("tls: {e}"))?;
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be more than zero"));
            }
        }
        Ok(())
    }

    /// The heartbeat interval in whole seconds, at least 1.
    pub(crate) fn heartbeat_secs(&self) -> u32 {
        u32::try_from(self.heartbeat.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_longest_matching_prefix_gives_a_room_its_rule() {
        let rules: RoomRulesConfig = serde_json::from_str(
            r#"{"default":"members","prefixes":[{"prefix":"pub-","join":"open"},{"prefix":"pub-vip-","join":"app"}]}"#,
        )
        .unwrap();
        assert_eq!(rules.of("pub-lobby"), JoinRule::Open);
        assert_eq!(rules.of("pub-vip-1"), JoinRule::App);
        assert_eq!(rules.of("team-a"), JoinRule::Members);
        assert_eq!(RoomRulesConfig::default().of("x"), JoinRule::Open);
        assert!(serde_json::from_str::<RoomRulesConfig>(r#"{"default":"closed"}"#).is_err());
    }

    #[test]
    fn parses_policy_and_durations_from_json() {
        let c: LogicConfig = serde_json::from_str(
            r#"{"login_policy":"kick_old","heartbeat":"10s","token_ttl":"1h"}"#,
        )
        .unwrap();
        assert_eq!(c.login_policy, LoginPolicy::KickOld);
        assert_eq!(c.heartbeat_secs(), 10);
        assert_eq!(c.token_ttl, Duration::from_secs(3600));
        assert_eq!(c.http_addr.port(), 3111);
        assert!(c.id.starts_with("logic-"));
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        let with = |jwt: &str, cluster: &str| LogicConfig {
            jwt_secret: jwt.into(),
            cluster_secret: cluster.into(),
            ..LogicConfig::default()
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
    fn refuses_unknown_fields() {
        assert!(serde_json::from_str::<LogicConfig>(r#"{"heartbeats":"1s"}"#).is_err());
    }
}
