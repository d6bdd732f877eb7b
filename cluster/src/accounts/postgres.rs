//! Accounts on sharded PostgreSQL ([`PgStore`]): one row per account in the
//! bucket of its user's inbox, so an account and its messages share a
//! shard. Registration is one insert that a taken uid refuses
//! (`courier_create_account`), so two concurrent registrations of one uid
//! cannot both win. Reads go to the primary, since a login right after
//! registration must find the account, or to a standby while the primary
//! cannot be reached (a failover).

use async_trait::async_trait;

use super::{Account, Accounts};
use crate::inbox::Stream;
use crate::postgres::shard::{pg_error, served, to_i32, yes_no_moved};
use crate::postgres::{PgStore, Routed};
use crate::Result;

#[async_trait]
impl Accounts for PgStore {
    async fn create(&self, account: &Account) -> Result<bool> {
        let key = Stream::User(&account.uid).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query(
                    "SELECT courier_create_account($1, $2, $3, $4)",
                    &[
                        &account.uid,
                        &to_i32(bucket),
                        &account.password_hash,
                        &account.created_at_ms,
                    ],
                )
                .await?;
            yes_no_moved(&rows)
        })
        .await
    }

    async fn set_password(&self, uid: &str, password_hash: &str) -> Result<bool> {
        let key = Stream::User(uid).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query(
                    "SELECT courier_set_password($1, $2, $3)",
                    &[&uid, &to_i32(bucket), &password_hash],
                )
                .await?;
            yes_no_moved(&rows)
        })
        .await
    }

    async fn get(&self, uid: &str) -> Result<Option<Account>> {
        let key = Stream::User(uid).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query_for_read(
                    "SELECT cb.state, a.password_hash, a.created_at_ms
                       FROM courier_buckets cb
                       LEFT JOIN courier_accounts a ON a.uid = $1
                      WHERE cb.bucket = $2",
                    &[&uid, &to_i32(bucket)],
                )
                .await?;
            let Some(row) = served(&rows)? else {
                return Ok(Routed::Moved);
            };
            let hash: Option<String> = row.try_get(1).map_err(pg_error)?;
            Ok(Routed::Done(match hash {
                Some(password_hash) => Some(Account {
                    uid: uid.to_owned(),
                    password_hash,
                    created_at_ms: row.try_get(2).map_err(pg_error)?,
                }),
                None => None,
            }))
        })
        .await
    }
}
