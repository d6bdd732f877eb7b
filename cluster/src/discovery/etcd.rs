//! etcd discovery: the `etcd://host:port[,host:port]` backend
//! (`etcds://` over TLS, `etcd[s]://user:password@host:port,...` with etcd's
//! authentication).
//!
//! A registration is a key `/courier/{kind}/{id}` attached to a lease the
//! process keeps alive ([`registration`]); a watch is a prefix `get` followed
//! by an etcd watch from the next revision ([`watcher`]).
//!
//! Both are built to survive etcd outages rather than report them: the
//! first call (`register`, `watch`) fails with [`Error::Unavailable`] so a
//! service that cannot reach etcd at start-up says so, but once running a
//! registration re-creates its lease and record when etcd is back, and a
//! watcher keeps its last view and resynchronises. Every etcd call is
//! bounded by [`CALL_TIMEOUT`]: tonic's balanced channel *waits* for an
//! endpoint to come back rather than failing, so an unbounded call would
//! hang through an outage.

mod registration;
mod watcher;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use courier_runtime::backoff::Backoff;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, TlsOptions, Txn, TxnOp,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Discovery, Registration, ServiceKind, View, REVOKED_PREFIX, STORE_PREFIX};
use crate::error::redacted;
use crate::tls::BackendTls;
use crate::{Error, Result};

/// Upper bound of one etcd request.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound of the lease revocation when a registration ends.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings that detect a silently dead connection under a long watch.
const PING_INTERVAL: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry delays after an outage.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// Discovery in etcd. Cheap to share: the client multiplexes one HTTP/2
/// connection per endpoint.
#[derive(Clone)]
pub struct EtcdDiscovery {
    client: Client,
    lease_ttl_secs: i64,
}

impl std::fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDiscovery")
            .field("lease_ttl_secs", &self.lease_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl EtcdDiscovery {
    /// Connects to the etcd cluster named by `url`, trusting the system's
    /// root certificates for TLS; see [`EtcdDiscovery::connect_tls`].
    pub async fn connect(url: &str, lease_ttl: Duration) -> Result<Self> {
        Self::connect_tls(url, lease_ttl, &BackendTls::default()).await
    }

    /// Connects to the etcd cluster named by `url`
    /// (`etcd://[user:password@]host:port[,host:port]`; `etcds://` over
    /// TLS, the members' certificates checked against `tls`'s CAs) and
    /// checks that it answers. With a user, the client authenticates as
    /// that etcd user (and renews its token by itself). Registrations are
    /// kept under leases of `lease_ttl` (rounded up to whole seconds, at
    /// least one; etcd may raise it to its minimum).
    pub async fn connect_tls(url: &str, lease_ttl: Duration, tls: &BackendTls) -> Result<Self> {
        let EtcdUrl {
            endpoints,
            tls: secure,
            user,
        } = EtcdUrl::parse(url)?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_keep_alive(PING_INTERVAL, PING_TIMEOUT)
            .with_keep_alive_while_idle(true);
        if let Some((name, password)) = user {
            // A token lapses when unused for the server's
            // `--auth-token-ttl` (five minutes by default): a refused one
            // is renewed and the request sent again.
            options = options
                .with_user(name, password)
                .with_auto_token_refresh(true);
        }
        if secure {
            let roots = match tls.ca_pem()? {
                Some(pem) => TlsOptions::new().ca_certificate(Certificate::from_pem(pem)),
                None => TlsOptions::new().with_native_roots(),
            };
            options = options.with_tls(roots);
        }
        let connecting = |e: Error| match e {
            Error::Unavailable { backend, message } => Error::Unavailable {
                backend,
                message: format!("connecting to {}: {message}", redacted(url)),
            },
            other => other,
        };
        let mut client = call(Client::connect(endpoints, Some(options)))
            .await
            .map_err(connecting)?;
        call(client.status()).await.map_err(connecting)?;
        Ok(Self {
            client,
            lease_ttl_secs: lease_ttl_secs(lease_ttl),
        })
    }
}

#[async_trait]
impl Discovery for EtcdDiscovery {
    async fn register(&self, kind: ServiceKind, id: &str, value: String) -> Result<Registration> {
        let record = registration::Record::new(
            self.client.clone(),
            format!("{}{id}", kind.prefix()),
            self.lease_ttl_secs,
        );
        let lease = record.publish(&value).await?;
        let (value_tx, value_rx) = watch::channel(value);
        let cancel = CancellationToken::new();
        let done = tokio::spawn(registration::keep_registered(
            record,
            lease,
            value_rx,
            cancel.clone(),
        ));
        Ok(Registration::new(value_tx, cancel, done))
    }

    async fn watch(&self, kind: ServiceKind) -> Result<watch::Receiver<View>> {
        self.watch_prefix(kind.prefix()).await
    }

    async fn watch_store(&self) -> Result<watch::Receiver<View>> {
        self.watch_prefix(STORE_PREFIX).await
    }

    async fn swap_store(&self, name: &str, expected: Option<&str>, value: &str) -> Result<bool> {
        let key = format!("{STORE_PREFIX}{name}");
        let condition = match expected {
            Some(old) => Compare::value(key.as_str(), CompareOp::Equal, old),
            None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([condition])
            .and_then([TxnOp::put(key.as_str(), value, None)]);
        let mut client = self.client.clone();
        Ok(call(client.txn(txn)).await?.succeeded())
    }

    async fn revoke(&self, name: &str, value: &str, ttl: Duration) -> Result<()> {
        // Its own lease, never kept alive: etcd drops the record when what
        // it revokes could no longer be used anyway.
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        let lease = call(client.lease_grant(ttl_secs, None)).await?;
        let options = etcd_client::PutOptions::new().with_lease(lease.id());
        let key = format!("{REVOKED_PREFIX}{name}");
        call(client.put(key.as_str(), value, Some(options))).await?;
        Ok(())
    }

    async fn watch_revoked(&self) -> Result<watch::Receiver<View>> {
        self.watch_prefix(REVOKED_PREFIX).await
    }
}

impl EtcdDiscovery {
    /// The records under `prefix`, kept up to date by a watcher task.
    async fn watch_prefix(&self, prefix: &'static str) -> Result<watch::Receiver<View>> {
        let mut client = self.client.clone();
        let (view, revision) = watcher::snapshot(&mut client, prefix).await?;
        let (tx, rx) = watch::channel(view);
        tokio::spawn(watcher::follow(client, prefix, tx, revision));
        Ok(rx)
    }
}

/// What an `etcd://` or `etcds://` URL names.
#[derive(Debug, PartialEq, Eq)]
struct EtcdUrl {
    /// `http://host:port` (`https://` for `etcds://`), one per member.
    endpoints: Vec<String>,
    tls: bool,
    /// The etcd user and password, percent-decoded.
    user: Option<(String, String)>,
}

impl EtcdUrl {
    /// `etcd://a:1,b:2` -> `["http://a:1", "http://b:2"]`; `etcds://` ->
    /// `https://`; `user:password@` before the hosts.
    fn parse(url: &str) -> Result<Self> {
        const EXPECTED: &str =
            "expected etcd://[user:password@]host:port[,host:port] or etcds://...";
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else {
            return Err(Error::bad_url(url, EXPECTED));
        };
        let (user, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let Some((name, password)) = userinfo.split_once(':') else {
                    return Err(Error::bad_url(
                        url,
                        "a user needs a password: user:password@",
                    ));
                };
                let name = percent_decode(name)
                    .ok_or_else(|| Error::bad_url(url, "bad %-escape in the user"))?;
                let password = percent_decode(password)
                    .ok_or_else(|| Error::bad_url(url, "bad %-escape in the password"))?;
                if name.is_empty() {
                    return Err(Error::bad_url(url, "empty user name"));
                }
                (Some((name, password)), hosts)
            }
            None => (None, rest),
        };
        let scheme = if tls { "https" } else { "http" };
        let hosts: Vec<&str> = hosts
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            return Err(Error::bad_url(url, "no etcd endpoint"));
        }
        if let Some(bad) = hosts.iter().find(|h| h.contains('/')) {
            return Err(Error::bad_url(url, format!("`{bad}` is not host:port")));
        }
        Ok(Self {
            endpoints: hosts.iter().map(|h| format!("{scheme}://{h}")).collect(),
            tls,
            user,
        })
    }
}

/// `%XX` escapes decoded; `None` for a malformed escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Whole seconds, rounded up, at least one.
fn lease_ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Runs one etcd request under [`CALL_TIMEOUT`], mapping every failure to
/// [`Error::Unavailable`].
async fn call<T>(
    request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::unavailable("etcd", crate::error::with_sources(&e))),
        Err(_) => Err(Error::unavailable(
            "etcd",
            format!("no answer within {CALL_TIMEOUT:?}"),
        )),
    }
}

/// The delays between reconnection attempts.
fn backoff() -> Backoff {
    Backoff::new(MIN_BACKOFF, MAX_BACKOFF)
}

/// Sleeps for the next backoff delay; `false` if `stop` finished first.
async fn pause(delays: &mut Backoff, stop: impl Future<Output = ()>) -> bool {
    let delay = delays.next_delay();
    tokio::select! {
        _ = stop => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(url: &str) -> Option<Vec<String>> {
        EtcdUrl::parse(url).ok().map(|u| u.endpoints)
    }

    #[test]
    fn endpoints_come_from_a_comma_separated_host_list() {
        assert_eq!(
            endpoints("etcd://a:1, b:2/"),
            Some(vec!["http://a:1".to_owned(), "http://b:2".to_owned()])
        );
        assert!(EtcdUrl::parse("etcd://").is_err());
        assert!(EtcdUrl::parse("redis://a:1").is_err());
        assert!(EtcdUrl::parse("etcd://a:1/x").is_err());
    }

    #[test]
    fn etcds_is_https_and_the_user_comes_before_the_hosts() {
        assert_eq!(
            EtcdUrl::parse("etcds://root:p%40ss:w@a:1,b:2").ok(),
            Some(EtcdUrl {
                endpoints: vec!["https://a:1".to_owned(), "https://b:2".to_owned()],
                tls: true,
                user: Some(("root".to_owned(), "p@ss:w".to_owned())),
            })
        );
        assert_eq!(
            EtcdUrl::parse("etcd://a:1").ok().map(|u| (u.tls, u.user)),
            Some((false, None))
        );
        let no_password = EtcdUrl::parse("etcd://root@a:1")
            .err()
            .map(|e| e.to_string());
        assert!(no_password.is_some_and(|e| e.contains("needs a password")));
        let bad = EtcdUrl::parse("etcds://root:pw%zz@a:1")
            .err()
            .map(|e| e.to_string());
        assert!(
            bad.as_deref().is_some_and(|e| !e.contains("pw%zz")),
            "{bad:?}"
        );
    }

    #[test]
    fn lease_ttl_rounds_up_to_whole_seconds() {
        assert_eq!(lease_ttl_secs(Duration::from_millis(10)), 1);
        assert_eq!(lease_ttl_secs(Duration::from_millis(2500)), 3);
        assert_eq!(lease_ttl_secs(Duration::from_secs(10)), 10);
        assert_eq!(lease_ttl_secs(Duration::ZERO), 1);
    }
}
