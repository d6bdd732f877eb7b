//! One shard: a PostgreSQL replication group (a primary and its standbys)
//! named by one multi-host URL.
//!
//! Writes, seq assignment, dedup and every head read go to the primary: a
//! pool over the whole host list with `target_session_attrs=read-write`, so
//! after a failover (done by the group's manager, never by Courier) new
//! connections find the new primary by themselves, and a connection that
//! failed is dropped rather than reused. History pages go to a standby
//! whose replay lag is under the bound ([`super::nodes`]), else to the
//! primary.
//!
//! Every query names the stream's bucket and checks, in the same
//! statement, that this shard serves it (`courier_buckets`), so a logic
//! acting on a stale routing table learns it (`Routed::Moved`) instead of
//! reading or writing where no one else does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::nodes::ReadNodes;
pub(crate) use super::sql::{first_value, pg_error, pg_failure, to_i32, to_i64, to_u64};
use super::tls::{connector, split_sslmode, SslMode};
use super::StoreOptions;
use crate::tls::BackendTls;
use crate::{Error, Result};

/// How long a new connection may take, per host tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A result that may have found the bucket served elsewhere.
#[derive(Debug)]
pub(crate) enum Routed<T> {
    Done(T),
    /// This shard does not serve the bucket (any more, or yet).
    Moved,
}

/// Why a statement failed.
enum Failure {
    /// The node could not be reached, or is no longer the primary: another
    /// node may answer.
    Unreachable(Error),
    /// The node answered with an error.
    Refused(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Unreachable(e) | Failure::Refused(e) => e,
        }
    }
}

/// Whether `error` says the node is read-only (a primary that became a
/// standby).
fn is_read_only(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// A stream's row, as the primary has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeadRow {
    /// Whether the stream exists.
    pub(crate) exists: bool,
    pub(crate) epoch: u64,
    pub(crate) last_seq: u64,
    /// The oldest seq held (0: none).
    pub(crate) first_seq: u64,
    pub(crate) ack_epoch: u64,
    pub(crate) ack_seq: u64,
}

/// One shard. See the module docs.
pub(crate) struct Shard {
    pub(crate) name: String,
    primary: Pool,
    pub(crate) nodes: ReadNodes,
    pub(crate) opts: StoreOptions,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A pool of connections made with `config`, over `tls` as its `sslmode`
/// says.
fn pool(config: Config, tls: MakeRustlsConnect, size: usize, wait: Duration) -> Result<Pool> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Unavailable {
            backend: "postgres",
            message: e.to_string(),
        })
}

/// `url` parsed, and its `sslmode` (see [`super::tls`]), or a bad-URL
/// error that does not echo a password.
pub(crate) fn parse_url(url: &str) -> Result<(Config, SslMode)> {
    let (mode, passed) = split_sslmode(url)?;
    let config: Config = passed
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::bad_url(url, e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(Error::bad_url(url, "no host"));
    }
    Ok((config, mode))
}

/// The config of one host of `config`: the same user, database and
/// options, that host alone, any session (a standby is what we want).
fn single_host(config: &Config, i: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(db) = config.get_dbname() {
        one.dbname(db);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    one.ssl_mode(config.get_ssl_mode());
    one.application_name(config.get_application_name().unwrap_or("courier"));
    match &config.get_hosts()[i] {
        Host::Tcp(host) => one.host(host),
        #[cfg(unix)]
        Host::Unix(path) => one.host_path(path),
    };
    let ports = config.get_ports();
    let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    one.port(port);
    one.connect_timeout(CONNECT_TIMEOUT);
    one
}

/// A readable name of host `i` of `config`.
fn host_name(config: &Config, i: usize) -> String {
    let host = match &config.get_hosts()[i] {
        Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        Host::Unix(p) => p.display().to_string(),
    };
    let ports = config.get_ports();
    let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    format!("{host}:{port}")
}

impl Shard {
    /// The shard named `name` at `url` (no connection is made yet), over
    /// TLS as its `sslmode` says, trusting `tls`'s CAs.
    pub(crate) fn new(
        name: &str,
        url: &str,
        opts: StoreOptions,
        tls: &BackendTls,
    ) -> Result<Arc<Self>> {
        let (config, mode) = parse_url(url)?;
        let tls = connector(mode, tls)?;
        let mut write = config.clone();
        write
            .target_session_attrs(TargetSessionAttrs::ReadWrite)
            .connect_timeout(CONNECT_TIMEOUT);
        if write.get_application_name().is_none() {
            write.application_name("courier");
        }
        let primary = pool(write, tls.clone(), opts.pool_size, opts.statement_timeout)?;
        let mut nodes = Vec::new();
        for i in 0..config.get_hosts().len() {
            let pool = pool(
                single_host(&config, i),
                tls.clone(),
                opts.read_pool_size,
                opts.statement_timeout,
            )?;
            nodes.push((host_name(&config, i), pool));
        }
        Ok(Arc::new(Self {
            name: name.to_owned(),
            primary,
            nodes: ReadNodes::new(name, nodes),
            opts,
        }))
    }

    /// A connection to the primary.
    pub(crate) async fn primary(&self) -> Result<Object> {
        self.primary.get().await.map_err(|e| pg_failure(&e))
    }

    /// Drops `conn` from its pool when `error` says the connection itself
    /// is unusable (closed, or a primary that became a standby), so the
    /// next one is made afresh and finds the current primary.
    pub(crate) fn discard_if_broken(conn: Object, error: &tokio_postgres::Error) {
        if error.as_db_error().is_none() || is_read_only(error) || conn.is_closed() {
            drop(Object::take(conn));
        }
    }

    /// Runs `sql` on the primary: its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.query_on(&self.primary, sql, params)
            .await
            .map_err(Failure::into_error)
    }

    /// Runs a read on the primary, or, while the primary cannot be reached
    /// (a failover in progress), on any node that answers: a standby of a
    /// synchronously replicated group holds every write the primary
    /// acknowledged, so reads and logins go on through the failover.
    pub(crate) async fn query_for_read(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let unreachable = match self.query_on(&self.primary, sql, params).await {
            Ok(rows) => return Ok(rows),
            Err(Failure::Refused(e)) => return Err(e),
            Err(Failure::Unreachable(e)) => e,
        };
        for (host, pool) in self.nodes.answering() {
            match self.query_on(pool, sql, params).await {
                Ok(rows) => {
                    metrics::counter!("courier_store_fallback_reads_total", "shard" => self.name.clone(), "node" => host.to_owned())
                        .increment(1);
                    return Ok(rows);
                }
                Err(f) => {
                    tracing::debug!(shard = %self.name, node = host, error = %f.into_error(), "fallback read failed")
                }
            }
        }
        Err(unreachable)
    }

    /// Runs `sql` on a connection of `pool` under the statement bound.
    async fn query_on(
        &self,
        pool: &Pool,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, Failure> {
        let conn = pool
            .get()
            .await
            .map_err(|e| Failure::Unreachable(pg_failure(&e)))?;
        let run = async {
            let statement = conn.prepare_cached(sql).await?;
            conn.query(&statement, params).await
        };
        let outcome = tokio::time::timeout(self.opts.statement_timeout, run).await;
        let unreachable = match &outcome {
            Ok(Err(e)) => e.as_db_error().is_none() || is_read_only(e),
            Err(_) => true,
            Ok(Ok(_)) => false,
        };
        self.settle(conn, outcome).map_err(|e| {
            if unreachable {
                Failure::Unreachable(e)
            } else {
                Failure::Refused(e)
            }
        })
    }

    /// Runs `sql` on the primary: the rows it changed.
    pub(crate) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let conn = self.primary().await?;
        let run = async {
            let statement = conn.prepare_cached(sql).await?;
            conn.execute(&statement, params).await
        };
        let outcome = tokio::time::timeout(self.opts.statement_timeout, run).await;
        self.settle(conn, outcome)
    }

    /// The result of work done on `conn` under the statement bound: the
    /// value, or the error, with a broken (or timed out) connection dropped
    /// from the pool.
    pub(crate) fn settle<T>(
        &self,
        conn: Object,
        outcome: std::result::Result<
            std::result::Result<T, tokio_postgres::Error>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<T> {
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let error = pg_failure(&e);
                Self::discard_if_broken(conn, &e);
                Err(error)
            }
            Err(_) => {
                drop(Object::take(conn));
                Err(pg_error(format!(
                    "no answer within {:?}",
                    self.opts.statement_timeout
                )))
            }
        }
    }

    /// The stream's head, from the primary.
    pub(crate) async fn head(&self, stream: &str, bucket: u32) -> Result<Routed<HeadRow>> {
        let rows = self
            .query_for_read(HEAD, &[&stream, &to_i32(bucket)])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Routed::Moved);
        };
        let state: &str = row.try_get(0).map_err(pg_error)?;
        if !serves_reads(state) {
            return Ok(Routed::Moved);
        }
        let epoch: Option<i64> = row.try_get(1).map_err(pg_error)?;
        let Some(epoch) = epoch else {
            return Ok(Routed::Done(HeadRow::default()));
        };
        Ok(Routed::Done(HeadRow {
            exists: true,
            epoch: to_u64(epoch),
            last_seq: to_u64(row.try_get(2).map_err(pg_error)?),
            ack_epoch: to_u64(row.try_get(3).map_err(pg_error)?),
            ack_seq: to_u64(row.try_get(4).map_err(pg_error)?),
            first_seq: to_u64(
                row.try_get::<_, Option<i64>>(5)
                    .map_err(pg_error)?
                    .unwrap_or(0),
            ),
        }))
    }

    /// Heads of several streams of this shard (`streams` and `buckets`
    /// pairwise), from the primary; `None` for a stream whose bucket this
    /// shard does not serve.
    pub(crate) async fn heads(
        &self,
        streams: &[String],
        buckets: &[u32],
    ) -> Result<Vec<Option<HeadRow>>> {
        let buckets: Vec<i32> = buckets.iter().map(|b| to_i32(*b)).collect();
        let rows = self.query_for_read(HEADS, &[&streams, &buckets]).await?;
        let mut heads = vec![None; streams.len()];
        for row in rows {
            let i: i64 = row.try_get(0).map_err(pg_error)?;
            let Some(slot) = usize::try_from(i.saturating_sub(1))
                .ok()
                .and_then(|i| heads.get_mut(i))
            else {
                continue;
            };
            let served: bool = row.try_get(1).map_err(pg_error)?;
            if !served {
                continue;
            }
            let epoch: Option<i64> = row.try_get(2).map_err(pg_error)?;
            *slot = Some(match epoch {
                None => HeadRow::default(),
                Some(epoch) => HeadRow {
                    exists: true,
                    epoch: to_u64(epoch),
                    last_seq: to_u64(row.try_get(3).map_err(pg_error)?),
                    first_seq: to_u64(
                        row.try_get::<_, Option<i64>>(4)
                            .map_err(pg_error)?
                            .unwrap_or(0),
                    ),
                    ack_epoch: 0,
                    ack_seq: 0,
                },
            });
        }
        Ok(heads)
    }

    /// Messages of `stream` with `after < seq < before`: the oldest `limit`
    /// of them (`limit` messages, and no more rows than reach `max_bytes`),
    /// or with `newest_first` the newest, in that order. From a standby
    /// within the lag bound when `from_standby` and there is one, else the
    /// primary (or, while it cannot be reached, any node).
    pub(crate) async fn messages(
        &self,
        stream: &str,
        bucket: u32,
        (after, before): (u64, u64),
        (limit, max_bytes): (usize, usize),
        newest_first: bool,
        from_standby: bool,
    ) -> Result<Routed<Vec<(u64, Bytes)>>> {
        let query = if newest_first { NEWEST } else { OLDEST };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 6] = [
            &stream,
            &to_i64(after),
            &to_i64(before),
            &limit,
            &to_i32(bucket),
            &max_bytes,
        ];
        if let Some((host, pool)) = self.nodes.pick().filter(|_| from_standby) {
            match self.query_on(pool, query, &params).await {
                Ok(rows) => {
                    metrics::counter!("courier_store_page_reads_total", "shard" => self.name.clone(), "node" => host.to_owned())
                        .increment(1);
                    // A standby behind a bucket move may not know the bucket
                    // is here yet: then the primary says.
                    if let Routed::Done(messages) = page_rows(&rows)? {
                        return Ok(Routed::Done(messages));
                    }
                }
                // Gone since the last probe: out of the read list until a
                // probe finds it again, and this page from the primary.
                Err(Failure::Unreachable(e)) => {
                    tracing::debug!(shard = %self.name, node = host, error = %e, "standby read failed");
                    self.nodes.drop_from_reads(host);
                }
                Err(Failure::Refused(e)) => return Err(e),
            }
        }
        let rows = self.query_for_read(query, &params).await?;
        metrics::counter!("courier_store_page_reads_total", "shard" => self.name.clone(), "node" => "primary")
            .increment(1);
        page_rows(&rows)
    }

    /// Moves `stream` to `new_epoch` if it is still in `old_epoch` below
    /// `seen_seq` (a reader proved the store lost writes).
    pub(crate) async fn new_epoch(
        &self,
        stream: &str,
        bucket: u32,
        old_epoch: u64,
        seen_seq: u64,
        new_epoch: u64,
    ) -> Result<Routed<()>> {
        let rows = self
            .query(
                "SELECT courier_new_epoch($1, $2, $3, $4, $5)",
                &[
                    &stream,
                    &to_i32(bucket),
                    &to_i64(old_epoch),
                    &to_i64(seen_seq),
                    &to_i64(new_epoch),
                ],
            )
            .await?;
        let outcome: i16 = first_value(&rows)?;
        Ok(if outcome == 2 {
            Routed::Moved
        } else {
            Routed::Done(())
        })
    }
}

/// The messages of a page query's rows, or `Moved` when the bucket is not
/// served where they were read.
fn page_rows(rows: &[Row]) -> Result<Routed<Vec<(u64, Bytes)>>> {
    let Some(first) = rows.first() else {
        return Ok(Routed::Moved);
    };
    let state: &str = first.try_get(0).map_err(pg_error)?;
    if !serves_reads(state) {
        return Ok(Routed::Moved);
    }
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: Option<i64> = row.try_get(1).map_err(pg_error)?;
        let Some(seq) = seq else { continue };
        let body: &[u8] = row.try_get(2).map_err(pg_error)?;
        messages.push((to_u64(seq), Bytes::copy_from_slice(body)));
    }
    Ok(Routed::Done(messages))
}

/// Whether a bucket in `state` may be read here.
fn serves_reads(state: &str) -> bool {
    matches!(state, "owned" | "fenced")
}

/// The first row of a read whose first column is the bucket's state, if
/// the bucket is read here (`None`: no row, or a bucket this shard does not
/// serve, so the caller answers `Moved`).
pub(crate) fn served(rows: &[Row]) -> Result<Option<&Row>> {
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let state: &str = row.try_get(0).map_err(pg_error)?;
    Ok(serves_reads(state).then_some(row))
}

/// A write function's `smallint` answer: 0 yes, 1 no, anything else (2)
/// the bucket is not owned here.
pub(crate) fn yes_no_moved(rows: &[Row]) -> Result<Routed<bool>> {
    Ok(match first_value::<i16>(rows)? {
        0 => Routed::Done(true),
        1 => Routed::Done(false),
        _ => Routed::Moved,
    })
}

/// The state of the bucket and the stream's head, in one snapshot.
const HEAD: &str = "
SELECT cb.state, cs.epoch, cs.last_seq, cs.ack_epoch, cs.ack_seq,
       (SELECT m.seq FROM courier_messages m WHERE m.stream = $1 ORDER BY m.seq LIMIT 1)
  FROM courier_buckets cb
  LEFT JOIN courier_streams cs ON cs.stream = $1
 WHERE cb.bucket = $2";

/// Heads of several streams: `(ordinal, bucket served, epoch, last, first)`.
const HEADS: &str = "
SELECT t.ord,
       EXISTS (SELECT 1 FROM courier_buckets cb WHERE cb.bucket = t.bucket AND cb.state IN ('owned', 'fenced')),
       cs.epoch, cs.last_seq,
       (SELECT m.seq FROM courier_messages m WHERE m.stream = t.stream ORDER BY m.seq LIMIT 1)
  FROM unnest($1::text[], $2::int4[]) WITH ORDINALITY AS t(stream, bucket, ord)
  LEFT JOIN courier_streams cs ON cs.stream = t.stream";

/// The bucket's state, then the oldest messages in a seq range (one row of
/// nulls when there are none; no row when the bucket is unknown here): at
/// most `$4` of them, and no row after the one that reaches `$6` bytes, so
/// a page of large messages does not travel whole to be cut here.
const OLDEST: &str = "
SELECT cb.state, m.seq, m.body
  FROM courier_buckets cb
  LEFT JOIN LATERAL (
      SELECT seq, body FROM (
          SELECT seq, body,
                 sum(length(body)) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) - length(body) AS before
            FROM (SELECT seq, body FROM courier_messages
                   WHERE stream = $1 AND seq > $2 AND seq < $3
                   ORDER BY seq LIMIT $4) AS taken
      ) AS sized
       WHERE before < $6
  ) m ON cb.state IN ('owned', 'fenced')
 WHERE cb.bucket = $5
 ORDER BY m.seq";

/// As [`OLDEST`], the newest messages of the range, newest first.
const NEWEST: &str = "
SELECT cb.state, m.seq, m.body
  FROM courier_buckets cb
  LEFT JOIN LATERAL (
      SELECT seq, body FROM (
          SELECT seq, body,
                 sum(length(body)) OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) - length(body) AS before
            FROM (SELECT seq, body FROM courier_messages
                   WHERE stream = $1 AND seq > $2 AND seq < $3
                   ORDER BY seq DESC LIMIT $4) AS taken
      ) AS sized
       WHERE before < $6
  ) m ON cb.state IN ('owned', 'fenced')
 WHERE cb.bucket = $5
 ORDER BY m.seq DESC";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_keeps_its_password() {
        assert!(parse_url("postgres://u:pw@/db")
            .err()
            .is_some_and(|e| !e.to_string().contains("pw")));
    }

    #[test]
    fn a_multi_host_url_gives_one_reader_per_host() {
        let config = parse_url(
            "postgres://courier@127.0.0.1:5432,127.0.0.1:5433/courier?sslmode=verify-full",
        )
        .ok();
        let Some((config, mode)) = config else {
            panic!("the URL parses");
        };
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(config.get_hosts().len(), 2);
        let second = single_host(&config, 1);
        assert_eq!(second.get_ports(), &[5433]);
        assert_eq!(
            second.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(second.get_dbname(), Some("courier"));
        assert_eq!(host_name(&config, 1), "127.0.0.1:5433");
    }
}
