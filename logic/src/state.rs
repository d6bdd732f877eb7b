//! What every request handler and RPC shares: config, backends and the
//! derived pieces built once at bind time (token keys, the comet view, the
//! per-IP limiter). Immutable after construction, so it sits behind one
//! `Arc` with no lock.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use courier_cluster::{Backends, Inbox, Sessions, StoreAdmin};
use courier_runtime::admin::Readiness;
use courier_runtime::{ClusterSecret, TokenKeys};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::accounts::AccountService;
use crate::config::LogicConfig;
use crate::keys::ApiKeys;
use crate::nodes::CometView;
use crate::publish::Publisher;

/// What the HTTP API and the gRPC service share.
pub(crate) struct LogicState {
    pub(crate) config: LogicConfig,
    pub(crate) sessions: Arc<dyn Sessions>,
    /// Room rules and membership.
    pub(crate) rooms: crate::room_access::RoomAccess,
    /// The application's hooks.
    pub(crate) hooks: Arc<crate::hooks::Hooks>,
    /// Room head counts, read at most once a second.
    pub(crate) room_counts: crate::room_counts::RoomCounts,
    pub(crate) inbox: Arc<dyn Inbox>,
    /// Operating the store of record; `None` on `memory://`.
    pub(crate) store_admin: Option<Arc<dyn StoreAdmin>>,
    /// One batch of bucket moves at a time.
    pub(crate) store_moves: Arc<tokio::sync::Semaphore>,
    pub(crate) accounts: AccountService,
    pub(crate) publisher: Publisher,
    pub(crate) tokens: TokenKeys,
    /// What every call to the gRPC service must carry.
    pub(crate) cluster_secret: ClusterSecret,
    /// TLS of calls to comets (the drain route); `None`: plaintext.
    pub(crate) comet_tls: Option<tonic::transport::ClientTlsConfig>,
    pub(crate) comets: CometView,
    /// Register/login requests per client IP; `None` when disabled.
    pub(crate) auth_limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Logins per (client IP, username); `None` when disabled.
    pub(crate) login_limiter: Option<DefaultKeyedRateLimiter<(IpAddr, String)>>,
    /// User-token reads per uid; `None` when disabled.
    pub(crate) read_limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Revoked tokens: the set in force, and revoking more.
    pub(crate) revocations: crate::revocations::Revocations,
    /// Each sender's budget of stored messages.
    pub(crate) send_quota: crate::senders::SendQuota,
    /// Uids a `Send` found known.
    pub(crate) known_users: crate::senders::KnownUsers,
    /// The API keys and their scopes.
    pub(crate) api_keys: ApiKeys,
    /// What `/readyz` answers: ready once registered, not once draining.
    pub(crate) readiness: Readiness,
}

impl LogicState {
    /// Builds the shared state over `backends`.
    pub(crate) fn new(
        config: LogicConfig,
        backends: &Backends,
        comets: CometView,
        revocations: crate::revocations::Revocations,
        hooks: crate::hooks::Hooks,
        cluster_secret: ClusterSecret,
        comet_tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Arc<Self> {
        let auth_limiter = NonZeroU32::new(config.auth_rate_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        let login_limiter = NonZeroU32::new(config.login_rate_per_user_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        let read_limiter = NonZeroU32::new(config.user_reads_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        // Checked by `LogicConfig::validate` before this runs.
        let api_keys = ApiKeys::new(&config.api_key, &config.api_keys).unwrap_or_default();
        let hooks = Arc::new(hooks);
        Arc::new(Self {
            tokens: TokenKeys::new(config.jwt_secret.as_bytes()),
            cluster_secret,
            comet_tls,
            sessions: backends.sessions.clone(),
            room_counts: crate::room_counts::RoomCounts::new(backends.sessions.clone()),
            rooms: crate::room_access::RoomAccess::new(
                backends.rooms.clone(),
                config.room_rules.clone(),
                hooks.clone(),
            ),
            inbox: backends.inbox.clone(),
            store_admin: backends.store_admin.clone(),
            store_moves: Arc::new(tokio::sync::Semaphore::new(1)),
            accounts: AccountService::new(backends.accounts.clone(), config.hash_queue),
            publisher: Publisher::new(
                backends.sessions.clone(),
                backends.inbox.clone(),
                backends.queue.clone(),
                hooks.clone(),
            ),
            hooks,
            comets,
            auth_limiter,
            login_limiter,
            read_limiter,
            send_quota: crate::senders::SendQuota::new(config.send_quota_per_minute),
            known_users: crate::senders::KnownUsers::default(),
            revocations,
            api_keys,
            readiness: Readiness::new(),
            config,
        })
    }
}
