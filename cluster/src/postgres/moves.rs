//! Moving a bucket to another shard while pushes go on.
//!
//! 1. The target marks the bucket `incoming` (rows it may hold from an
//!    earlier stay are purged first): it serves nothing of it yet.
//! 2. Copy, twice, while the source keeps serving: every stream's messages
//!    the target does not have yet, by `(stream, seq)`, so seqs are kept.
//! 3. Fence the source: its row goes `fenced` under the bucket's advisory
//!    lock taken exclusively, which waits for every write of the bucket in
//!    flight there and refuses every later one (readers go on).
//! 4. Copy what arrived since, then the stream rows (epoch, last seq,
//!    acks), dedup keys, accounts, and rooms' rules and members; check
//!    both sides hold the same streams, seqs and counts of messages,
//!    accounts, rules and members.
//! 5. The target marks the bucket `owned`; the routing table is switched
//!    (compare-and-swap); writers waiting on the fence go to the target.
//! 6. The source marks the bucket `gone` and deletes its rows in chunks.
//!
//! A failure before the switch lifts the fence (the source serves the
//! bucket again; the target's copy is purged by the next attempt), unless
//! the table already routes to the target (an answer lost after etcd took
//! the switch): then the move finishes. A move that died half-way is
//! finished by asking for it again: every step is idempotent, and a fenced
//! source (with the target incoming or already owning) is carried on from.
//!
//! For the whole move, the mover holds two session locks on dedicated
//! connections: on the source, the bucket's move lock, so two logics (or
//! two operators) cannot move one bucket at once; on both shards, the
//! retention lock, so no sweep deletes rows between the copies and the
//! comparison.

use std::time::{Duration, Instant};

use deadpool_postgres::Object;

use super::routing::BUCKETS;
use super::shard::{first_value, pg_error, to_i32, Shard};
use super::PgStore;
use crate::store_admin::{MoveState, MoveStatus};
use crate::{Error, Result};

/// Messages copied per statement.
const COPY_CHUNK: i64 = 1_000;
/// Rows deleted per statement when the source cleans up.
const DELETE_CHUNK: i64 = 5_000;
/// Moves a store remembers for its status, newest last.
const MOVES_KEPT: usize = 1_024;

impl PgStore {
    /// Moves `bucket` to shard `to` (see the module docs); returns what it
    /// did. Moving a bucket to where it already is does nothing.
    pub async fn move_bucket(&self, bucket: u32, to: &str) -> Result<MoveStatus> {
        if bucket >= BUCKETS {
            return Err(Error::bad_url(
                "bucket",
                format!("bucket {bucket}: 0-{}", BUCKETS - 1),
            ));
        }
        let target = self.handle(to)?.shard.clone();
        let table = self
            .routes
            .table()
            .ok_or_else(|| Error::unavailable("postgres", "no routing table"))?;
        let from = table.shard_of(bucket).unwrap_or_default().to_owned();
        let mut status = MoveStatus {
            bucket,
            from: from.clone(),
            to: to.to_owned(),
            state: MoveState::Copying,
            messages: 0,
            streams: 0,
            fenced_ms: None,
            error: None,
        };
        if from == to {
            // Already there; finish a clean-up an earlier move left.
            for (name, handle) in &self.shards {
                if name != to && state_of(&handle.shard, bucket).await?.as_deref() == Some("fenced")
                {
                    clean_up(&handle.shard, bucket).await?;
                }
            }
            status.state = MoveState::Done;
            return Ok(status);
        }
        let source = self.handle(&from)?.shard.clone();
        let index = {
            let mut moves = self.moves.lock();
            if moves.len() >= MOVES_KEPT {
                moves.remove(0);
            }
            moves.push(status.clone());
            moves.len() - 1
        };
        let result = match MoveLocks::take(&source, &target, bucket).await {
            Ok(locks) => {
                let moved = self
                    .run_move(&source, &target, bucket, &mut status, index)
                    .await;
                locks.release();
                moved
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            status.state = MoveState::Failed;
            status.error = Some(e.to_string());
            tracing::error!(bucket, from = %from, to, error = %e, "bucket move failed");
        }
        self.publish(index, &status);
        result.map(|()| status)
    }

    fn handle(&self, name: &str) -> Result<&std::sync::Arc<super::ShardHandle>> {
        self.shards
            .get(name)
            .ok_or_else(|| Error::bad_url(name, format!("no shard named `{name}` is configured")))
    }

    fn publish(&self, index: usize, status: &MoveStatus) {
        if let Some(slot) = self.moves.lock().get_mut(index) {
            *slot = status.clone();
        }
    }

    async fn run_move(
        &self,
        source: &Shard,
        target: &Shard,
        bucket: u32,
        status: &mut MoveStatus,
        index: usize,
    ) -> Result<()> {
        tracing::info!(bucket, from = %source.name, to = %target.name, "moving a bucket");
        let resumed = state_of(source, bucket).await?.as_deref() == Some("fenced");
        begin_incoming(target, bucket, resumed).await?;
        if !resumed {
            for _ in 0..2 {
                status.messages += copy_messages(source, target, bucket).await?;
                self.publish(index, status);
            }
        }
        let fenced_at = Instant::now();
        status.state = MoveState::Fenced;
        self.publish(index, status);
        let copied = async {
            fence(source, bucket).await?;
            status.messages += copy_messages(source, target, bucket).await?;
            if state_of(target, bucket).await?.as_deref() == Some("gone") {
                return Err(Error::unavailable(
                    "postgres",
                    format!("bucket {bucket} left `{}` while it was copied", target.name),
                ));
            }
            status.streams = copy_rest(source, target, bucket).await?;
            verify(source, target, bucket).await?;
            if !set_state(target, bucket, "owned", &["incoming", "owned"]).await? {
                return Err(Error::unavailable(
                    "postgres",
                    format!("bucket {bucket} is no longer incoming on `{}`", target.name),
                ));
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            // Nothing was switched: lift the fence, the source serves the
            // bucket again.
            if let Err(lift) = set_state(source, bucket, "owned", &["fenced"]).await {
                tracing::error!(bucket, error = %lift, "cannot lift the fence; ask for the move again to finish it");
            }
            let _ = set_state(target, bucket, "gone", &["incoming", "owned"]).await;
            return Err(e);
        }
        // From here the table may already send the bucket to the target (a
        // switch whose answer was lost): the fence stays until the switch is
        // known, and asking for the move again finishes it.
        self.switch_route(bucket, &source.name, &target.name)
            .await?;
        status.fenced_ms = Some(u64::try_from(fenced_at.elapsed().as_millis()).unwrap_or(u64::MAX));
        status.state = MoveState::CleaningUp;
        self.publish(index, status);
        clean_up(source, bucket).await?;
        status.state = MoveState::Done;
        tracing::info!(
            bucket,
            from = %source.name,
            to = %target.name,
            messages = status.messages,
            streams = status.streams,
            fenced_ms = status.fenced_ms,
            "bucket moved"
        );
        Ok(())
    }

    /// Routes `bucket` from `from` to `to`, retrying while other changes
    /// race; refuses if the table sends it anywhere else meanwhile.
    async fn switch_route(&self, bucket: u32, from: &str, to: &str) -> Result<()> {
        for _ in 0..10 {
            let table = self
                .routes
                .table()
                .ok_or_else(|| Error::unavailable("postgres", "no routing table"))?;
            match table.shard_of(bucket) {
                Some(now) if now == to => return Ok(()),
                Some(now) if now == from => {}
                now => {
                    return Err(Error::unavailable(
                        "postgres",
                        format!("bucket {bucket} is routed to {now:?} now, not `{from}`"),
                    ))
                }
            }
            let next = table.with_route(bucket, to);
            if self.routes.swap(&table, &next).await? {
                // Wait for our own watch to see it, so the caller's next
                // read of the table is the new one.
                let _ = self
                    .routes
                    .newer_than(table.version, Duration::from_secs(5))
                    .await;
                return Ok(());
            }
            let _ = self
                .routes
                .newer_than(table.version, Duration::from_secs(1))
                .await;
        }
        Err(Error::unavailable(
            "etcd",
            "the routing table kept changing",
        ))
    }
}

/// The bucket's state on `shard` (`None`: no row).
async fn state_of(shard: &Shard, bucket: u32) -> Result<Option<String>> {
    let rows = shard
        .query(
            "SELECT state FROM courier_buckets WHERE bucket = $1",
            &[&to_i32(bucket)],
        )
        .await?;
    rows.first()
        .map(|r| r.try_get::<_, String>(0).map_err(pg_error))
        .transpose()
}

/// Sets the bucket's state to `to` where it is one of `from`; returns
/// whether a row changed.
async fn set_state(shard: &Shard, bucket: u32, to: &str, from: &[&str]) -> Result<bool> {
    let from: Vec<&str> = from.to_vec();
    let n = shard
        .execute(
            "UPDATE courier_buckets SET state = $2, changed_at = now()
              WHERE bucket = $1 AND state = ANY ($3)",
            &[&to_i32(bucket), &to, &from],
        )
        .await?;
    Ok(n > 0)
}

/// Marks the bucket incoming on the target. A fresh move first purges rows
/// an earlier stay left behind; a resumed one keeps what it copied.
async fn begin_incoming(target: &Shard, bucket: u32, resumed: bool) -> Result<()> {
    match state_of(target, bucket).await?.as_deref() {
        // A move that died after the target took the bucket, before the
        // switch: carry on.
        Some("incoming") | Some("owned") if resumed => return Ok(()),
        Some("owned") | Some("fenced") => {
            return Err(Error::unavailable(
                "postgres",
                format!(
                    "shard `{}` already serves bucket {bucket}, which the routing table sends elsewhere",
                    target.name
                ),
            ))
        }
        _ => {}
    }
    delete_bucket_rows(target, bucket).await?;
    target
        .execute(
            "INSERT INTO courier_buckets (bucket, state) VALUES ($1, 'incoming')
             ON CONFLICT (bucket) DO UPDATE SET state = 'incoming', changed_at = now()",
            &[&to_i32(bucket)],
        )
        .await?;
    Ok(())
}

/// Refuses every later write of the bucket on `source`, once the writes in
/// flight there have committed.
async fn fence(source: &Shard, bucket: u32) -> Result<()> {
    let mut conn = source.primary().await?;
    let b = to_i32(bucket);
    let run = async {
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock(1130, $1)", &[&b])
            .await?;
        tx.execute(
            "UPDATE courier_buckets SET state = 'fenced', changed_at = now()
              WHERE bucket = $1 AND state = 'owned'",
            &[&b],
        )
        .await?;
        tx.commit().await
    };
    let outcome = tokio::time::timeout(source.opts.statement_timeout, run).await;
    source.settle(conn, outcome)?;
    match state_of(source, bucket).await?.as_deref() {
        Some("fenced") => Ok(()),
        other => Err(Error::unavailable(
            "postgres",
            format!(
                "bucket {bucket} on `{}` is {other:?}, not owned",
                source.name
            ),
        )),
    }
}

/// The streams of the bucket on `shard`.
async fn streams_of(shard: &Shard, bucket: u32) -> Result<Vec<String>> {
    let rows = shard
        .query(
            "SELECT stream FROM courier_streams WHERE bucket = $1 ORDER BY stream",
            &[&to_i32(bucket)],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(pg_error))
        .collect()
}

/// Copies every message of the bucket's streams that the target lacks;
/// returns how many.
async fn copy_messages(source: &Shard, target: &Shard, bucket: u32) -> Result<u64> {
    let mut copied = 0;
    for stream in streams_of(source, bucket).await? {
        let rows = target
            .query(
                "SELECT coalesce(max(seq), 0)::int8 FROM courier_messages WHERE stream = $1",
                &[&stream],
            )
            .await?;
        let mut after: i64 = first_value(&rows)?;
        loop {
            let rows = source
                .query(
                    "SELECT seq, stored_at, body FROM courier_messages
                      WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&stream, &after, &COPY_CHUNK],
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut seqs: Vec<i64> = Vec::with_capacity(rows.len());
            let mut times: Vec<std::time::SystemTime> = Vec::with_capacity(rows.len());
            let mut bodies: Vec<&[u8]> = Vec::with_capacity(rows.len());
            for row in &rows {
                seqs.push(row.try_get(0).map_err(pg_error)?);
                times.push(row.try_get(1).map_err(pg_error)?);
                bodies.push(row.try_get(2).map_err(pg_error)?);
            }
            target
                .execute(
                    "INSERT INTO courier_messages (stream, seq, stored_at, body)
                     SELECT $1, s, t, b FROM unnest($2::int8[], $3::timestamptz[], $4::bytea[]) AS u(s, t, b)
                     ON CONFLICT (stream, seq) DO NOTHING",
                    &[&stream, &seqs, &times, &bodies],
                )
                .await?;
            copied += rows.len() as u64;
            after = seqs.last().copied().unwrap_or(after);
            if (rows.len() as i64) < COPY_CHUNK {
                break;
            }
        }
    }
    Ok(copied)
}

/// Copies the stream rows, live dedup keys, accounts, and rooms' rules and
/// members of the bucket (the source is fenced, so they no longer change);
/// returns the streams.
async fn copy_rest(source: &Shard, target: &Shard, bucket: u32) -> Result<u64> {
    let b = to_i32(bucket);
    let streams = source
        .query(
            "SELECT stream, epoch, last_seq, ack_epoch, ack_seq FROM courier_streams WHERE bucket = $1",
            &[&b],
        )
        .await?;
    let column = |i: usize| -> Result<Vec<i64>> {
        streams
            .iter()
            .map(|r| r.try_get(i).map_err(pg_error))
            .collect()
    };
    let names: Vec<String> = streams
        .iter()
        .map(|r| r.try_get(0).map_err(pg_error))
        .collect::<Result<_>>()?;
    let (epochs, lasts, ack_epochs, ack_seqs) = (column(1)?, column(2)?, column(3)?, column(4)?);
    target
        .execute(
            "INSERT INTO courier_streams (stream, bucket, epoch, last_seq, ack_epoch, ack_seq)
             SELECT s, $2, e, l, ae, a FROM unnest($1::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) AS u(s, e, l, ae, a)
             ON CONFLICT (stream) DO UPDATE SET bucket = EXCLUDED.bucket, epoch = EXCLUDED.epoch,
                last_seq = EXCLUDED.last_seq, ack_epoch = EXCLUDED.ack_epoch, ack_seq = EXCLUDED.ack_seq",
            &[&names, &b, &epochs, &lasts, &ack_epochs, &ack_seqs],
        )
        .await?;
    let dedup = source
        .query(
            "SELECT d.stream, d.key, d.epoch, d.seq, d.expires_at FROM courier_dedup d
               JOIN courier_streams s ON s.stream = d.stream
              WHERE s.bucket = $1 AND d.expires_at > now()",
            &[&b],
        )
        .await?;
    for chunk in dedup.chunks(COPY_CHUNK as usize) {
        let get = |i: usize| -> Result<Vec<String>> {
            chunk
                .iter()
                .map(|r| r.try_get(i).map_err(pg_error))
                .collect()
        };
        let (ds, dk) = (get(0)?, get(1)?);
        let de: Vec<i64> = chunk
            .iter()
            .map(|r| r.try_get(2).map_err(pg_error))
            .collect::<Result<_>>()?;
        let dq: Vec<i64> = chunk
            .iter()
            .map(|r| r.try_get(3).map_err(pg_error))
            .collect::<Result<_>>()?;
        let dx: Vec<std::time::SystemTime> = chunk
            .iter()
            .map(|r| r.try_get(4).map_err(pg_error))
            .collect::<Result<_>>()?;
        target
            .execute(
                "INSERT INTO courier_dedup (stream, key, epoch, seq, expires_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::timestamptz[])
                 ON CONFLICT (stream, key) DO UPDATE SET epoch = EXCLUDED.epoch, seq = EXCLUDED.seq,
                    expires_at = EXCLUDED.expires_at",
                &[&ds, &dk, &de, &dq, &dx],
            )
            .await?;
    }
    let accounts = source
        .query(
            "SELECT uid, password_hash, created_at_ms FROM courier_accounts WHERE bucket = $1",
            &[&b],
        )
        .await?;
    for chunk in accounts.chunks(COPY_CHUNK as usize) {
        let uids: Vec<String> = chunk
            .iter()
            .map(|r| r.try_get(0).map_err(pg_error))
            .collect::<Result<_>>()?;
        let hashes: Vec<String> = chunk
            .iter()
            .map(|r| r.try_get(1).map_err(pg_error))
            .collect::<Result<_>>()?;
        let created: Vec<i64> = chunk
            .iter()
            .map(|r| r.try_get(2).map_err(pg_error))
            .collect::<Result<_>>()?;
        target
            .execute(
                "INSERT INTO courier_accounts (uid, bucket, password_hash, created_at_ms)
                 SELECT u, $2, h, t FROM unnest($1::text[], $3::text[], $4::int8[]) AS x(u, h, t)
                 ON CONFLICT (uid) DO NOTHING",
                &[&uids, &b, &hashes, &created],
            )
            .await?;
    }
    copy_rooms(source, target, b).await?;
    copy_members(source, target, b).await?;
    Ok(names.len() as u64)
}

/// Copies the rooms' own rules of bucket `b`.
async fn copy_rooms(source: &Shard, target: &Shard, b: i32) -> Result<()> {
    let rooms = source
        .query(
            "SELECT room, join_rule FROM courier_rooms WHERE bucket = $1",
            &[&b],
        )
        .await?;
    for chunk in rooms.chunks(COPY_CHUNK as usize) {
        let names: Vec<&str> = chunk
            .iter()
            .map(|r| r.try_get(0).map_err(pg_error))
            .collect::<Result<_>>()?;
        let rules: Vec<&str> = chunk
            .iter()
            .map(|r| r.try_get(1).map_err(pg_error))
            .collect::<Result<_>>()?;
        target
            .execute(
                "INSERT INTO courier_rooms (room, bucket, join_rule)
                 SELECT r, $2, j FROM unnest($1::text[], $3::text[]) AS x(r, j)
                 ON CONFLICT (room) DO UPDATE SET bucket = EXCLUDED.bucket, join_rule = EXCLUDED.join_rule",
                &[&names, &b, &rules],
            )
            .await?;
    }
    Ok(())
}

/// Copies the rooms' members of bucket `b`, a chunk at a time in (room,
/// uid) order: a bucket may hold far more members than fit in memory.
async fn copy_members(source: &Shard, target: &Shard, b: i32) -> Result<()> {
    let mut after: Option<(String, String)> = None;
    loop {
        let rows = match &after {
            None => {
                source
                    .query(
                        "SELECT room, uid FROM courier_room_members
                          WHERE bucket = $1 ORDER BY room, uid LIMIT $2",
                        &[&b, &COPY_CHUNK],
                    )
                    .await?
            }
            Some((room, uid)) => {
                source
                    .query(
                        "SELECT room, uid FROM courier_room_members
                          WHERE bucket = $1 AND (room, uid) > ($3, $4) ORDER BY room, uid LIMIT $2",
                        &[&b, &COPY_CHUNK, room, uid],
                    )
                    .await?
            }
        };
        let rooms: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(0).map_err(pg_error))
            .collect::<Result<_>>()?;
        let uids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(1).map_err(pg_error))
            .collect::<Result<_>>()?;
        let (Some(room), Some(uid)) = (rooms.last(), uids.last()) else {
            return Ok(());
        };
        after = Some((room.clone(), uid.clone()));
        target
            .execute(
                "INSERT INTO courier_room_members (room, uid, bucket)
                 SELECT r, u, $3 FROM unnest($1::text[], $2::text[]) AS x(r, u)
                 ON CONFLICT (room, uid) DO NOTHING",
                &[&rooms, &uids, &b],
            )
            .await?;
        if (rows.len() as i64) < COPY_CHUNK {
            return Ok(());
        }
    }
}

/// Per bucket: streams, the sum of their last seqs, messages, accounts,
/// rooms with a rule of their own, and room members.
async fn fingerprint(shard: &Shard, bucket: u32) -> Result<(i64, i64, i64, i64, i64, i64)> {
    let rows = shard
        .query(
            "SELECT (SELECT count(*) FROM courier_streams WHERE bucket = $1),
                    (SELECT coalesce(sum(last_seq), 0)::int8 FROM courier_streams WHERE bucket = $1),
                    (SELECT count(*) FROM courier_messages m JOIN courier_streams s ON s.stream = m.stream
                      WHERE s.bucket = $1),
                    (SELECT count(*) FROM courier_accounts WHERE bucket = $1),
                    (SELECT count(*) FROM courier_rooms WHERE bucket = $1),
                    (SELECT count(*) FROM courier_room_members WHERE bucket = $1)",
            &[&to_i32(bucket)],
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::corrupt("postgres", "no row"))?;
    let get = |i| row.try_get::<_, i64>(i).map_err(pg_error);
    Ok((get(0)?, get(1)?, get(2)?, get(3)?, get(4)?, get(5)?))
}

/// Both shards hold the same streams, seqs, messages, accounts, room rules
/// and room members.
async fn verify(source: &Shard, target: &Shard, bucket: u32) -> Result<()> {
    let (a, b) = (
        fingerprint(source, bucket).await?,
        fingerprint(target, bucket).await?,
    );
    if a != b {
        return Err(Error::corrupt(
            "postgres",
            format!("bucket {bucket} copy differs: source {a:?}, target {b:?} (streams, seq sum, messages, accounts, room rules, room members)"),
        ));
    }
    Ok(())
}

/// Marks the bucket gone on `shard` and deletes its rows.
async fn clean_up(shard: &Shard, bucket: u32) -> Result<()> {
    set_state(shard, bucket, "gone", &["fenced", "owned"]).await?;
    delete_bucket_rows(shard, bucket).await
}

/// Deletes every row of the bucket on `shard`, in chunks.
async fn delete_bucket_rows(shard: &Shard, bucket: u32) -> Result<()> {
    let b = to_i32(bucket);
    for statement in [
        "DELETE FROM courier_messages WHERE ctid = ANY (ARRAY(
            SELECT m.ctid FROM courier_messages m JOIN courier_streams s ON s.stream = m.stream
             WHERE s.bucket = $1 LIMIT $2))",
        "DELETE FROM courier_dedup WHERE ctid = ANY (ARRAY(
            SELECT d.ctid FROM courier_dedup d JOIN courier_streams s ON s.stream = d.stream
             WHERE s.bucket = $1 LIMIT $2))",
        "DELETE FROM courier_streams WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM courier_streams WHERE bucket = $1 LIMIT $2))",
        "DELETE FROM courier_accounts WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM courier_accounts WHERE bucket = $1 LIMIT $2))",
        "DELETE FROM courier_rooms WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM courier_rooms WHERE bucket = $1 LIMIT $2))",
        "DELETE FROM courier_room_members WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM courier_room_members WHERE bucket = $1 LIMIT $2))",
    ] {
        loop {
            let n = shard.execute(statement, &[&b, &DELETE_CHUNK]).await?;
            if n < u64::try_from(DELETE_CHUNK).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    Ok(())
}

/// The session locks a move holds (see the module docs), on connections
/// of their own that are closed, not pooled, when it ends: closing a
/// session drops its locks whatever happened to the move.
struct MoveLocks {
    held: Vec<Object>,
}

impl MoveLocks {
    /// Takes the bucket's move lock on the source (or fails at once if
    /// another logic moves it), then the retention lock on both shards
    /// (waiting for a sweep's chunk in progress).
    async fn take(source: &Shard, target: &Shard, bucket: u32) -> Result<Self> {
        let mut locks = Self { held: Vec::new() };
        let conn = source.primary().await?;
        let ours: bool = conn
            .query_one("SELECT pg_try_advisory_lock(1133, $1)", &[&to_i32(bucket)])
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(pg_error)?;
        locks.held.push(conn);
        if !ours {
            locks.release();
            return Err(Error::unavailable(
                "postgres",
                format!("bucket {bucket} is being moved by another logic"),
            ));
        }
        for shard in [source, target] {
            let conn = shard.primary().await?;
            let sweep_held = tokio::time::timeout(
                shard.opts.statement_timeout,
                conn.batch_execute("SELECT pg_advisory_lock(1131, 0)"),
            )
            .await;
            locks.held.push(conn);
            match sweep_held {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    locks.release();
                    return Err(pg_error(e));
                }
                Err(_) => {
                    locks.release();
                    return Err(pg_error("a retention sweep held its lock too long"));
                }
            }
        }
        Ok(locks)
    }

    /// Closes the sessions, and with them the locks.
    fn release(self) {
        for conn in self.held {
            drop(Object::take(conn));
        }
    }
}
