//! Room rules and members on sharded PostgreSQL ([`PgStore`]): rows in the
//! bucket of the room's history (`r:<room>`), so a room's rule, members and
//! messages share a shard and move together. Writes are one function call
//! each that checks the bucket is owned here (`courier_set_room_rule`,
//! `courier_add_room_members`, `courier_remove_room_member`). Reads go to
//! the primary, since a member added and then joining at once must be
//! found, or to a standby while the primary cannot be reached (a
//! failover), as accounts are read.

use async_trait::async_trait;

use super::{check_members_per_call, JoinRule, RoomRules};
use crate::inbox::Stream;
use crate::postgres::shard::{first_value, pg_error, served, to_i32, yes_no_moved};
use crate::postgres::{PgStore, Routed};
use crate::{Error, Result};

#[async_trait]
impl RoomRules for PgStore {
    async fn set_rule(&self, room: &str, rule: JoinRule) -> Result<()> {
        let key = Stream::Room(room).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query(
                    "SELECT courier_set_room_rule($1, $2, $3)",
                    &[&room, &to_i32(bucket), &rule.as_str()],
                )
                .await?;
            Ok(match first_value::<i16>(&rows)? {
                0 => Routed::Done(()),
                _ => Routed::Moved,
            })
        })
        .await
    }

    async fn rule(&self, room: &str) -> Result<Option<JoinRule>> {
        let key = Stream::Room(room).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query_for_read(
                    "SELECT cb.state, r.join_rule
                       FROM courier_buckets cb
                       LEFT JOIN courier_rooms r ON r.room = $1
                      WHERE cb.bucket = $2",
                    &[&room, &to_i32(bucket)],
                )
                .await?;
            let Some(row) = served(&rows)? else {
                return Ok(Routed::Moved);
            };
            let name: Option<&str> = row.try_get(1).map_err(pg_error)?;
            name.map(parse_rule).transpose().map(Routed::Done)
        })
        .await
    }

    async fn add_members(&self, room: &str, uids: &[String]) -> Result<usize> {
        check_members_per_call("postgres", uids)?;
        if uids.is_empty() {
            return Ok(0);
        }
        let key = Stream::Room(room).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query(
                    "SELECT courier_add_room_members($1, $2, $3)",
                    &[&room, &to_i32(bucket), &uids],
                )
                .await?;
            let added = first_value::<i32>(&rows)?;
            Ok(match usize::try_from(added) {
                Ok(added) => Routed::Done(added),
                // -1: the bucket is not owned here.
                Err(_) => Routed::Moved,
            })
        })
        .await
    }

    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool> {
        let key = Stream::Room(room).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query(
                    "SELECT courier_remove_room_member($1, $2, $3)",
                    &[&room, &to_i32(bucket), &uid],
                )
                .await?;
            yes_no_moved(&rows)
        })
        .await
    }

    async fn is_member(&self, room: &str, uid: &str) -> Result<bool> {
        let key = Stream::Room(room).key();
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query_for_read(
                    "SELECT cb.state,
                            EXISTS (SELECT 1 FROM courier_room_members m
                                     WHERE m.room = $1 AND m.uid = $2)
                       FROM courier_buckets cb
                      WHERE cb.bucket = $3",
                    &[&room, &uid, &to_i32(bucket)],
                )
                .await?;
            let Some(row) = served(&rows)? else {
                return Ok(Routed::Moved);
            };
            Ok(Routed::Done(row.try_get(1).map_err(pg_error)?))
        })
        .await
    }

    async fn members(&self, room: &str, after: &str, limit: usize) -> Result<Vec<String>> {
        let key = Stream::Room(room).key();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.routed(&key, |handle, bucket| async move {
            let rows = handle
                .shard
                .query_for_read(MEMBERS, &[&room, &after, &limit, &to_i32(bucket)])
                .await?;
            if served(&rows)?.is_none() {
                return Ok(Routed::Moved);
            }
            let mut uids = Vec::with_capacity(rows.len());
            for row in &rows {
                let uid: Option<String> = row.try_get(1).map_err(pg_error)?;
                uids.extend(uid);
            }
            Ok(Routed::Done(uids))
        })
        .await
    }
}

/// A stored rule name as the rule (the table's check allows no other).
fn parse_rule(name: &str) -> Result<JoinRule> {
    JoinRule::parse(name)
        .ok_or_else(|| Error::corrupt("postgres", format!("unknown join rule `{name}`")))
}

/// The bucket's state, then up to `$3` members of room `$1` after uid `$2`
/// in uid order (one row of nulls when there are none; no row when the
/// bucket is unknown here).
const MEMBERS: &str = "
SELECT cb.state, m.uid
  FROM courier_buckets cb
  LEFT JOIN LATERAL (
      SELECT uid FROM courier_room_members
       WHERE room = $1 AND uid > $2
       ORDER BY uid LIMIT $3
  ) m ON cb.state IN ('owned', 'fenced')
 WHERE cb.bucket = $4
 ORDER BY m.uid";
