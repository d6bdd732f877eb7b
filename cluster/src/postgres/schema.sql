-- Courier's store of record, version 1: what one shard holds.
--
-- Every table is prefixed `courier_`, so the store can share a database.
-- Logic applies this file at start (under an advisory lock, so concurrent
-- starts do not race); every statement is idempotent.

CREATE TABLE IF NOT EXISTS courier_schema (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Which buckets this shard serves. Writes and reads of a stream check its
-- bucket here in the same statement, so a logic holding an old routing
-- table is refused ('moved') instead of writing where nobody reads:
--   owned    this shard serves the bucket
--   incoming a move is copying the bucket here; not served yet
--   fenced   a move is finishing: reads are served, writes are refused
--   gone     the bucket moved away; its rows are being (or were) deleted
CREATE TABLE IF NOT EXISTS courier_buckets (
    bucket integer PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('owned', 'incoming', 'fenced', 'gone')),
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per stream (`u:<uid>` inbox, `r:<room>` history): its epoch, the
-- last seq assigned (the head row every append locks and bumps, so seqs
-- are gap-free and commit in order) and the user's acknowledged position.
CREATE TABLE IF NOT EXISTS courier_streams (
    stream text PRIMARY KEY,
    bucket integer NOT NULL,
    epoch bigint NOT NULL,
    last_seq bigint NOT NULL,
    ack_epoch bigint NOT NULL DEFAULT 0,
    ack_seq bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS courier_streams_bucket ON courier_streams (bucket);

-- Every stored message: the encoded bytes logic wrote once, seq and epoch
-- unset (they are stamped on as the message is read).
CREATE TABLE IF NOT EXISTS courier_messages (
    stream text NOT NULL,
    seq bigint NOT NULL,
    stored_at timestamptz NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (stream, seq)
);
-- Retention deletes by age: rows are appended in time order, so a BRIN
-- index finds old ones at a fraction of a B-tree's cost per insert.
CREATE INDEX IF NOT EXISTS courier_messages_stored_at ON courier_messages USING brin (stored_at);

-- Idempotency keys per stream, for their window.
CREATE TABLE IF NOT EXISTS courier_dedup (
    stream text NOT NULL,
    key text NOT NULL,
    epoch bigint NOT NULL,
    seq bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (stream, key)
);
CREATE INDEX IF NOT EXISTS courier_dedup_expires_at ON courier_dedup (expires_at);

-- Accounts, in the bucket of their user's inbox.
CREATE TABLE IF NOT EXISTS courier_accounts (
    uid text PRIMARY KEY,
    bucket integer NOT NULL,
    password_hash text NOT NULL,
    created_at_ms bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS courier_accounts_bucket ON courier_accounts (bucket);

-- Rooms' own join rules, in the bucket of the room's history (`r:<room>`),
-- so a room's rule, members and messages move together.
CREATE TABLE IF NOT EXISTS courier_rooms (
    room text PRIMARY KEY,
    bucket integer NOT NULL,
    join_rule text NOT NULL CHECK (join_rule IN ('open', 'members', 'app'))
);
CREATE INDEX IF NOT EXISTS courier_rooms_bucket ON courier_rooms (bucket);

-- Rooms' members, in the room's bucket. Uids compare bytewise (collation
-- "C") whatever the database's locale, so members are paged in the same
-- order by every backend, and the primary key's index serves the pages.
-- The bucket index holds (room, uid) too, so a bucket move copies the
-- members of a bucket page by page from the index.
CREATE TABLE IF NOT EXISTS courier_room_members (
    room text NOT NULL,
    uid text COLLATE "C" NOT NULL,
    bucket integer NOT NULL,
    PRIMARY KEY (room, uid)
);
CREATE INDEX IF NOT EXISTS courier_room_members_bucket ON courier_room_members (bucket, room, uid);

-- Each logic stamps the time here on the primary; a standby's replay lag
-- is how far behind its copy of the newest stamp is.
CREATE TABLE IF NOT EXISTS courier_heartbeat (
    writer text PRIMARY KEY,
    at timestamptz NOT NULL
);

-- The write path: a batch of appends and acks from one logic, in one
-- transaction and one round trip (group commit).
--
-- Items are handled in stream order (array order within a stream), so two
-- batches lock head rows in the same order and cannot deadlock. Each
-- bucket touched is locked in share mode first: a bucket move's fence
-- takes that lock exclusively, so once the fence is committed no write of
-- the bucket can commit here. Items of a bucket this shard does not own
-- come back as outcome 2 ('moved') and change nothing.
--
-- kinds: 0 append, 1 ack. For an append, epochs[i] is the epoch a new
-- stream starts with; for an ack, the acked position is (epochs[i],
-- seqs[i]). Outcomes: 0 done, 1 a repeat of the dedup key (nothing
-- stored; the original position returned), 2 moved.
CREATE OR REPLACE FUNCTION courier_write(
    kinds smallint[],
    streams text[],
    buckets integer[],
    bodies bytea[],
    keys text[],
    epochs bigint[],
    seqs bigint[],
    dedup_ttl_ms bigint
) RETURNS TABLE (r_item integer, r_outcome smallint, r_epoch bigint, r_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    b integer;
    item integer;
    unowned integer[];
    e bigint;
    s bigint;
BEGIN
    FOR b IN SELECT DISTINCT x FROM unnest(buckets) AS x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock_shared(1130, b);
    END LOOP;
    SELECT coalesce(array_agg(u.x), '{}') INTO unowned
      FROM (SELECT DISTINCT x FROM unnest(buckets) AS x) AS u
     WHERE NOT EXISTS (SELECT 1 FROM courier_buckets cb WHERE cb.bucket = u.x AND cb.state = 'owned');
    FOR item IN SELECT t.ord FROM unnest(streams) WITH ORDINALITY AS t(st, ord) ORDER BY t.st, t.ord LOOP
        r_item := item;
        IF buckets[item] = ANY (unowned) THEN
            r_outcome := 2; r_epoch := 0; r_seq := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF kinds[item] = 1 THEN
            UPDATE courier_streams cs
               SET ack_epoch = epochs[item], ack_seq = least(seqs[item], cs.last_seq)
             WHERE cs.stream = streams[item] AND cs.epoch = epochs[item]
               AND (cs.ack_epoch <> epochs[item] OR cs.ack_seq < least(seqs[item], cs.last_seq));
            r_outcome := 0; r_epoch := epochs[item]; r_seq := seqs[item];
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF keys[item] IS NOT NULL THEN
            -- Two batches with the same key must not both miss it: the one
            -- that looks second waits here until the first has committed.
            -- (Items come in stream order, so these locks are taken in one
            -- order by every batch.)
            PERFORM pg_advisory_xact_lock(1132, hashtext(streams[item]));
            SELECT d.epoch, d.seq INTO e, s FROM courier_dedup d
             WHERE d.stream = streams[item] AND d.key = keys[item] AND d.expires_at > now();
            IF FOUND THEN
                r_outcome := 1; r_epoch := e; r_seq := s;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        INSERT INTO courier_streams AS cs (stream, bucket, epoch, last_seq)
        VALUES (streams[item], buckets[item], epochs[item], 1)
        ON CONFLICT (stream) DO UPDATE SET last_seq = cs.last_seq + 1
        RETURNING cs.epoch, cs.last_seq INTO e, s;
        INSERT INTO courier_messages (stream, seq, stored_at, body)
        VALUES (streams[item], s, now(), bodies[item]);
        IF keys[item] IS NOT NULL THEN
            INSERT INTO courier_dedup AS d (stream, key, epoch, seq, expires_at)
            VALUES (streams[item], keys[item], e, s, now() + dedup_ttl_ms * interval '1 millisecond')
            ON CONFLICT (stream, key) DO UPDATE
               SET epoch = EXCLUDED.epoch, seq = EXCLUDED.seq, expires_at = EXCLUDED.expires_at;
        END IF;
        r_outcome := 0; r_epoch := e; r_seq := s;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Whether this transaction may write to `p_bucket`: takes the bucket's
-- lock in share mode (a move's fence takes it exclusively, see
-- courier_write) and checks that this shard owns the bucket.
CREATE OR REPLACE FUNCTION courier_may_write(p_bucket integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1130, p_bucket);
    RETURN EXISTS (SELECT 1 FROM courier_buckets WHERE bucket = p_bucket AND state = 'owned');
END
$$;

-- A reader showed a seq this stream never recorded (the shard was restored
-- from an old backup): the stream moves to a new epoch so every device is
-- told. Returns 2 if the bucket is not owned here, else 0.
CREATE OR REPLACE FUNCTION courier_new_epoch(
    p_stream text, p_bucket integer, p_old_epoch bigint, p_seen_seq bigint, p_new_epoch bigint
) RETURNS smallint
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT courier_may_write(p_bucket) THEN
        RETURN 2;
    END IF;
    UPDATE courier_streams SET epoch = p_new_epoch
     WHERE stream = p_stream AND epoch = p_old_epoch AND last_seq < p_seen_seq;
    RETURN 0;
END
$$;

-- Registers an account. Returns 2 if the bucket is not owned here, 1 if
-- the uid is taken, 0 if created.
CREATE OR REPLACE FUNCTION courier_create_account(
    p_uid text, p_bucket integer, p_hash text, p_created_at_ms bigint
) RETURNS smallint
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT courier_may_write(p_bucket) THEN
        RETURN 2;
    END IF;
    INSERT INTO courier_accounts (uid, bucket, password_hash, created_at_ms)
    VALUES (p_uid, p_bucket, p_hash, p_created_at_ms)
    ON CONFLICT (uid) DO NOTHING;
    IF FOUND THEN
        RETURN 0;
    END IF;
    RETURN 1;
END
$$;

-- Replaces an account's password hash. Returns 2 if the bucket is not
-- owned here, 1 if there is no such account, 0 if replaced.
CREATE OR REPLACE FUNCTION courier_set_password(
    p_uid text, p_bucket integer, p_hash text
) RETURNS smallint
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT courier_may_write(p_bucket) THEN
        RETURN 2;
    END IF;
    UPDATE courier_accounts SET password_hash = p_hash WHERE uid = p_uid;
    IF FOUND THEN
        RETURN 0;
    END IF;
    RETURN 1;
END
$$;

-- Gives a room its own join rule, replacing one it had. Returns 2 if the
-- bucket is not owned here, else 0.
CREATE OR REPLACE FUNCTION courier_set_room_rule(
    p_room text, p_bucket integer, p_rule text
) RETURNS smallint
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT courier_may_write(p_bucket) THEN
        RETURN 2;
    END IF;
    INSERT INTO courier_rooms (room, bucket, join_rule)
    VALUES (p_room, p_bucket, p_rule)
    ON CONFLICT (room) DO UPDATE SET join_rule = EXCLUDED.join_rule;
    RETURN 0;
END
$$;

-- Adds members to a room. Returns -1 if the bucket is not owned here, else
-- how many were not members before. Uids are inserted in order, so two
-- concurrent calls with overlapping uids wait for each other's rows in one
-- order and cannot deadlock.
CREATE OR REPLACE FUNCTION courier_add_room_members(
    p_room text, p_bucket integer, p_uids text[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    added integer;
BEGIN
    IF NOT courier_may_write(p_bucket) THEN
        RETURN -1;
    END IF;
    INSERT INTO courier_room_members (room, uid, bucket)
    SELECT DISTINCT p_room, u COLLATE "C", p_bucket FROM unnest(p_uids) AS u ORDER BY 2
    ON CONFLICT (room, uid) DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$$;

-- Removes a member from a room. Returns 2 if the bucket is not owned here,
-- 1 if the uid was not a member, 0 if removed.
CREATE OR REPLACE FUNCTION courier_remove_room_member(
    p_room text, p_bucket integer, p_uid text
) RETURNS smallint
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT courier_may_write(p_bucket) THEN
        RETURN 2;
    END IF;
    DELETE FROM courier_room_members WHERE room = p_room AND uid = p_uid;
    IF FOUND THEN
        RETURN 0;
    END IF;
    RETURN 1;
END
$$;

INSERT INTO courier_schema (version) VALUES (1) ON CONFLICT DO NOTHING;
