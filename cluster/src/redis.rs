//! The Redis connection the session store (and anything else Courier
//! keeps in Redis) shares: one type for both Redis deployments.
//!
//! `redis://host:port[/db]` (`rediss://` over TLS) is a single server behind a
//! [`ConnectionManager`] (multiplexed, reconnects by itself);
//! `redis+cluster://host:port[,host:port...]` is a Redis Cluster behind the
//! crate's async cluster connection (follows slot moves). Both are cheap to
//! clone and pipeline concurrent requests on their sockets, so callers clone a
//! [`RedisConn`] per request instead of pooling.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, TlsCertificates, Value};

use crate::error::redacted;
use crate::tls::BackendTls;
use crate::{Error, Result};

/// How long one command may wait for its reply. The client's default
/// (500 ms) fails commands that merely queue behind others on the shared
/// connection when a burst arrives; a push then answers 503 for a backend
/// that is only busy. Past this, Redis is really stuck.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to a single Redis or a Redis Cluster. Clone it freely: clones
/// share the underlying sockets.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner {
            Inner::Single(_) => f.write_str("RedisConn(single)"),
            Inner::Cluster(_) => f.write_str("RedisConn(cluster)"),
        }
    }
}

impl RedisConn {
    /// Connects to a single server or a Redis Cluster, trusting the
    /// system's root certificates for TLS; see [`RedisConn::connect_tls`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_tls(url, &BackendTls::default()).await
    }

    /// Connects to `redis://[user:password@]host:port[/db]` (single
    /// server) or `redis+cluster://[user:password@]host:port[,host:port...]`
    /// (Redis Cluster; the nodes listed are seeds, the rest of the topology
    /// is discovered). `rediss://` and `rediss+cluster://` are the same over
    /// TLS, the server's certificate checked against `tls`'s CAs. The user
    /// is an ACL user (`AUTH user password`); a password alone authenticates
    /// the `default` user. Percent-encode `@`, `:` and `/` in either.
    pub async fn connect_tls(url: &str, tls: &BackendTls) -> Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::bad_url(url, "expected redis://host:port"));
        };
        let connecting = |e: RedisError| {
            Error::unavailable("redis", format!("connecting to {}: {e}", redacted(url)))
        };
        // Shown at 0 from the start, so an alert on their rate has a series.
        for kind in ["command", "pipeline"] {
            metrics::counter!("courier_redis_errors_total", "kind" => kind).increment(0);
        }
        let inner = match scheme {
            "redis" | "rediss" => {
                let client = if scheme == "rediss" {
                    crate::tls::ensure_crypto_provider();
                    redis::Client::build_with_tls(url, certificates(tls)?)
                } else {
                    redis::Client::open(url)
                }
                .map_err(|e| Error::bad_url(url, e.to_string()))?;
                let config =
                    ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
                let manager = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(connecting)?;
                Inner::Single(manager)
            }
            "redis+cluster" | "rediss+cluster" => {
                let node_scheme = scheme.trim_end_matches("+cluster");
                // The credentials, if any, are the seeds' own: every node
                // of a cluster takes the same.
                let (userinfo, nodes) = match rest.rsplit_once('@') {
                    Some((userinfo, nodes)) => (format!("{userinfo}@"), nodes),
                    None => (String::new(), rest),
                };
                let seeds: Vec<String> = nodes
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|node| format!("{node_scheme}://{userinfo}{node}"))
                    .collect();
                if seeds.is_empty() {
                    return Err(Error::bad_url(url, "expected at least one host:port"));
                }
                let mut builder = ClusterClient::builder(seeds).response_timeout(RESPONSE_TIMEOUT);
                if node_scheme == "rediss" {
                    crate::tls::ensure_crypto_provider();
                    builder = builder.certs(certificates(tls)?);
                }
                let client = builder
                    .build()
                    .map_err(|e| Error::bad_url(url, e.to_string()))?;
                Inner::Cluster(client.get_async_connection().await.map_err(connecting)?)
            }
            other => {
                return Err(Error::bad_url(
                    url,
                    format!("`{other}` is not a Redis scheme"),
                ));
            }
        };
        let mut conn = Self { inner };
        // A server that takes connections may still refuse commands (no
        // `AUTH`, a user without rights): say so now, not at the first use.
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(connecting)?;
        Ok(conn)
    }
}

/// The CAs a `rediss://` server's certificate is checked against: the
/// `backend_ca` file, else (no root given) the system's roots.
fn certificates(tls: &BackendTls) -> Result<TlsCertificates> {
    Ok(TlsCertificates {
        client_tls: None,
        root_cert: tls.ca_pem()?,
    })
}

/// Times one round trip (`kind`: a command or a pipeline) and counts it
/// if it failed: `courier_redis_duration_seconds`, `courier_redis_errors_total`.
fn measured<'a, T: Send + 'a>(kind: &'static str, call: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = call.await;
        metrics::histogram!("courier_redis_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("courier_redis_errors_total", "kind" => kind).increment(1);
        }
        result
    })
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let call = match &mut self.inner {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        };
        measured("command", call)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let call = match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        };
        measured("pipeline", call)
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

/// Maps a client error: a reply of the wrong shape is bad data, anything
/// else (I/O, server refusal, cluster down) means "try again later".
pub(crate) fn redis_error(e: RedisError) -> Error {
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Error::corrupt("redis", e),
        _ => unavailable(e),
    }
}

fn unavailable(e: RedisError) -> Error {
    Error::unavailable("redis", e)
}

/// Bad data found under one of our keys.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt("redis", format!("{what}: {e}"))
}
