//! Where the cluster's shared state lives: one URL per backend (the store
//! of record may be several shards), and how long what is stored is kept.
//! Plain data; the binary loads it with the rest of a process's config,
//! tests build it directly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inbox::InboxOptions;
use crate::sessions::SessionOptions;

/// Where the cluster's shared state lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Session store (who is connected where, presence, the room index):
    /// `memory://` or `redis://host:port` (`redis+cluster://host:port,...`
    /// for Redis Cluster). A cache the comets can rebuild. `rediss://` and
    /// `rediss+cluster://` connect over TLS; an ACL user and password go
    /// before the host: `rediss://user:password@host:port`.
    pub sessions: String,
    /// The store of record (accounts, every stored message): `memory://` or
    /// one `postgres://` URL (a single shard named `main`; list a
    /// replication group's hosts, `postgres://user@h1:5432,h2:5432/db`).
    /// Leave it at `memory://` when `shards` is set. TLS by the URL's
    /// `sslmode`: `disable`, `prefer` (the default: TLS if the server offers
    /// it, certificate not checked), `require` (TLS, certificate not
    /// checked), `verify-ca` (chain checked) or `verify-full` (chain and host
    /// name checked), e.g. `postgres://user:pw@db:5432/courier?sslmode=verify-full`.
    pub store: String,
    /// Several shards of the store of record: name -> `postgres://` URL.
    pub shards: BTreeMap<String, String>,
    /// Message queue: `memory://` or `kafka://host:port/topic`. TLS and
    /// SASL are librdkafka settings in `kafka` (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`).
    pub queue: String,
    /// Service discovery (and the store's routing table): `memory://` or
    /// `etcd://host:port[,host:port]`; `etcds://` connects over TLS, and a
    /// user and password go before the hosts: `etcds://user:password@host:port`.
    pub discovery: String,
    /// PEM file of the CA certificates that backends' TLS certificates must
    /// chain to (`rediss://`, `etcds://`, PostgreSQL's
    /// `sslmode=verify-ca|verify-full`, and Kafka's `ssl.ca.location` unless
    /// `kafka` sets it). When set, only these CAs are trusted; unset, the
    /// system's root certificates.
    #[schemars(with = "Option<String>")]
    pub backend_ca: Option<PathBuf>,
    /// How long a session replaced by a newer login cannot come back
    /// (longer than the comets' `session_check`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ended_session_ttl: Duration,
    /// How long a comet's load report (its online counts) lives.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub comet_ttl: Duration,
    /// Lease of a discovery registration.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub lease_ttl: Duration,
    /// Partitions of the queue topic (created if missing).
    pub queue_partitions: u32,
    /// Extra librdkafka settings, e.g. `"linger.ms" = "1"`. TLS:
    /// `"security.protocol" = "SSL"` (the CA: `backend_ca`, or
    /// `"ssl.ca.location"`); SASL: `"security.protocol" = "SASL_SSL"` (or
    /// `"SASL_PLAINTEXT"`), `"sasl.mechanism" = "SCRAM-SHA-512"` (or
    /// `SCRAM-SHA-256`, `PLAIN`), `"sasl.username"`, `"sasl.password"`.
    pub kafka: BTreeMap<String, String>,
    /// How long a stored message is kept (0: forever).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retention: Duration,
    /// How long a `client_msg_id` or `Idempotency-Key` is remembered.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idempotency_window: Duration,
    /// A standby whose replay lags more than this serves no history reads.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_read_lag: Duration,
    /// Connections per shard primary.
    pub store_pool_size: usize,
    /// Group commits in flight per shard primary.
    pub store_commits_in_flight: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let s = SessionOptions::default();
        let i = InboxOptions::default();
        Self {
            sessions: "memory://".into(),
            store: "memory://".into(),
            shards: BTreeMap::new(),
            queue: "memory://".into(),
            discovery: "memory://".into(),
            backend_ca: None,
            ended_session_ttl: s.ended_ttl,
            comet_ttl: s.comet_ttl,
            lease_ttl: Duration::from_secs(10),
            queue_partitions: 8,
            kafka: BTreeMap::new(),
            retention: i.retention,
            idempotency_window: i.dedup_window,
            max_read_lag: Duration::from_secs(1),
            store_pool_size: 8,
            store_commits_in_flight: 1,
        }
    }
}

impl ClusterConfig {
    /// How long the message store keeps what it keeps.
    pub fn inbox_options(&self) -> InboxOptions {
        InboxOptions {
            retention: self.retention,
            dedup_window: self.idempotency_window,
        }
    }

    /// What the backends' TLS trusts (see [`crate::tls`]).
    pub fn backend_tls(&self) -> crate::tls::BackendTls {
        crate::tls::BackendTls::new(self.backend_ca.clone())
    }

    /// The librdkafka settings of the queue: `kafka`, and `ssl.ca.location`
    /// = `backend_ca` when `security.protocol` is `SSL` or `SASL_SSL` and
    /// `kafka` names no CA of its own.
    pub fn kafka_settings(&self) -> BTreeMap<String, String> {
        let mut settings = self.kafka.clone();
        let tls = settings
            .get("security.protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl"));
        let own_ca = ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]
            .iter()
            .any(|key| settings.contains_key(*key));
        if let (true, false, Some(ca)) = (tls, own_ca, &self.backend_ca) {
            settings.insert("ssl.ca.location".into(), ca.display().to_string());
        }
        settings
    }

    /// The session-store lifetimes this config sets.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            ended_ttl: self.ended_session_ttl,
            comet_ttl: self.comet_ttl,
        }
    }

    /// Checks what can be checked without connecting: every backend URL
    /// names a scheme this build knows, and the store is one of its forms.
    pub fn validate(&self) -> Result<(), String> {
        let known: [(&str, &str, &[&str]); 3] = [
            (
                "sessions",
                &self.sessions,
                &[
                    "memory",
                    "redis",
                    "rediss",
                    "redis+cluster",
                    "rediss+cluster",
                ],
            ),
            ("queue", &self.queue, &["memory", "kafka"]),
            ("discovery", &self.discovery, &["memory", "etcd", "etcds"]),
        ];
        for (key, url, schemes) in known {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !scheme.is_some_and(|s| schemes.contains(&s)) {
                return Err(format!(
                    "{key} `{}`: expected one of {}",
                    crate::error::redacted(url),
                    schemes
                        .iter()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        self.store_shards().map_err(|e| format!("store: {e}"))?;
        if self.queue_partitions == 0 {
            return Err("queue_partitions must be at least 1".into());
        }
        Ok(())
    }

    /// The shards of the store of record (name -> URL): `shards`, or the one
    /// `store` URL named `main`; empty for `memory://`. Refuses both at once.
    pub fn store_shards(&self) -> Result<BTreeMap<String, String>, String> {
        let single =
            self.store.starts_with("postgres://") || self.store.starts_with("postgresql://");
        match (single, self.shards.is_empty()) {
            (true, true) => Ok(BTreeMap::from([("main".to_owned(), self.store.clone())])),
            (false, false) if self.store == "memory://" => Ok(self.shards.clone()),
            (false, true) if self.store == "memory://" => Ok(BTreeMap::new()),
            (true, false) | (false, false) => {
                Err("set either `store` (one shard) or `shards` (several), not both".into())
            }
            (false, true) => Err(format!(
                "store `{}`: expected memory:// or postgres://...",
                crate::error::redacted(&self.store)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_shard_and_shards_are_named() {
        let mut c = ClusterConfig::default();
        assert_eq!(c.store_shards(), Ok(BTreeMap::new()));
        c.store = "postgres://h/db".into();
        assert_eq!(
            c.store_shards(),
            Ok(BTreeMap::from([("main".into(), "postgres://h/db".into())]))
        );
        c.shards.insert("a".into(), "postgres://a/db".into());
        assert!(c.store_shards().is_err(), "both at once");
        c.store = "memory://".into();
        assert_eq!(c.store_shards().map(|s| s.len()), Ok(1));
        c.store = "redis://x".into();
        c.shards.clear();
        assert!(c.store_shards().is_err());
    }

    #[test]
    fn backend_ca_is_kafkas_ca_under_tls_unless_kafka_names_one() {
        let mut c = ClusterConfig {
            backend_ca: Some("/etc/courier/ca.pem".into()),
            ..ClusterConfig::default()
        };
        assert!(c.kafka_settings().is_empty(), "no TLS, no CA");
        c.kafka
            .insert("security.protocol".into(), "SASL_SSL".into());
        assert_eq!(
            c.kafka_settings()
                .get("ssl.ca.location")
                .map(String::as_str),
            Some("/etc/courier/ca.pem")
        );
        c.kafka
            .insert("ssl.ca.location".into(), "/other.pem".into());
        assert_eq!(
            c.kafka_settings()
                .get("ssl.ca.location")
                .map(String::as_str),
            Some("/other.pem")
        );
    }
}
