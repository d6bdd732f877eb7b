//! Where the cluster's shared state lives: one URL per backend, and the
//! lifetimes of what the session store keeps. Plain data; the binary loads
//! it with the rest of a process's config, tests build it directly.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inbox::{InboxOptions, StreamLimits};
use crate::sessions::SessionOptions;

/// Where the cluster's shared state lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Session and account store: `memory://` or `redis://host:port`
    /// (`redis+cluster://host:port,host:port` for Redis Cluster).
    pub sessions: String,
    /// Message queue: `memory://` or `kafka://host:port/topic`.
    pub queue: String,
    /// Service discovery: `memory://` or `etcd://host:port`.
    pub discovery: String,
    /// How long a session replaced by a newer login cannot come back
    /// (longer than the comets' `session_check`).
    #[serde(with = "humantime_serde")]
    pub ended_session_ttl: Duration,
    /// How long a comet's load report (its online counts) lives.
    #[serde(with = "humantime_serde")]
    pub comet_ttl: Duration,
    /// Lease of a discovery registration.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Partitions of the queue topic (created if missing).
    pub queue_partitions: u32,
    /// Extra librdkafka settings, e.g. `"linger.ms" = "1"`.
    pub kafka: BTreeMap<String, String>,
    /// Messages one user's inbox keeps (the oldest go first).
    pub inbox_max_messages: usize,
    /// How long a stored message is kept; an inbox with no new message for
    /// this long is forgotten.
    #[serde(with = "humantime_serde")]
    pub inbox_max_age: Duration,
    /// Messages one room's history keeps.
    pub room_history_max_messages: usize,
    /// How long a room message is kept.
    #[serde(with = "humantime_serde")]
    pub room_history_max_age: Duration,
    /// How long a `client_msg_id` or `Idempotency-Key` is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let s = SessionOptions::default();
        let i = InboxOptions::default();
        Self {
            sessions: "memory://".into(),
            queue: "memory://".into(),
            discovery: "memory://".into(),
            ended_session_ttl: s.ended_ttl,
            comet_ttl: s.comet_ttl,
            lease_ttl: Duration::from_secs(10),
            queue_partitions: 8,
            kafka: BTreeMap::new(),
            inbox_max_messages: i.inbox.max_messages,
            inbox_max_age: i.inbox.max_age,
            room_history_max_messages: i.room.max_messages,
            room_history_max_age: i.room.max_age,
            idempotency_window: i.dedup_window,
        }
    }
}

impl ClusterConfig {
    /// The message store's bounds this config sets.
    pub fn inbox_options(&self) -> InboxOptions {
        InboxOptions {
            inbox: StreamLimits {
                max_messages: self.inbox_max_messages.max(1),
                max_age: self.inbox_max_age,
            },
            room: StreamLimits {
                max_messages: self.room_history_max_messages.max(1),
                max_age: self.room_history_max_age,
            },
            dedup_window: self.idempotency_window,
        }
    }

    /// The session-store lifetimes this config sets.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            ended_ttl: self.ended_session_ttl,
            comet_ttl: self.comet_ttl,
        }
    }
}
