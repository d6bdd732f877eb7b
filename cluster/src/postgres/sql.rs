//! Small helpers every query of the store uses: errors, bounds, and the
//! conversions between Courier's unsigned numbers and PostgreSQL's signed
//! columns.

use std::time::Duration;

use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::{Error, Result};

/// A database error as the store reports it: a backend that is down or
/// refused (retry later).
pub(crate) fn pg_error(e: impl std::fmt::Display) -> Error {
    Error::unavailable("postgres", e)
}

/// [`pg_error`] for an error whose own message is only its kind (a
/// tokio-postgres error says "db error" or "error performing TLS
/// handshake"): the errors under it follow, `: `-separated.
pub(crate) fn pg_failure(e: &(dyn std::error::Error + 'static)) -> Error {
    pg_error(crate::error::with_sources(e))
}

/// Runs `f` under the shard's statement bound.
pub(crate) async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(pg_failure(&e)),
        Err(_) => Err(pg_error(format!("no answer within {limit:?}"))),
    }
}

/// The first column of the first row.
pub(crate) fn first_value<T: for<'a> FromSql<'a>>(rows: &[Row]) -> Result<T> {
    rows.first()
        .ok_or_else(|| Error::corrupt("postgres", "no row"))?
        .try_get(0)
        .map_err(pg_error)
}

/// A stored `bigint` read back as the unsigned value it was written from.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An unsigned value as a `bigint` (seqs and epochs stay far below 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A bucket as an `integer`.
pub(crate) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}
