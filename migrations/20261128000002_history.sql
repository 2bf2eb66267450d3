-- History: per-minute and per-hour rollups of readings, and the views that
-- `GET /api/history` reads.
--
-- Plain PostgreSQL path (this file). The server keeps the rollups current:
-- a statement trigger marks every (channel, minute) that an INSERT touched as
-- dirty, and a background job (server/src/rollup.rs) recomputes dirty minutes
-- from raw rows, then their hours from minutes, and clears the marks, all in
-- one transaction. A re-sent reading is skipped by the readings key, never
-- reaches the trigger, and so changes nothing.
--
-- The views `history_1m` and `history_1h` are the only way the API reads
-- rollups. Here they answer a dirty minute (or an hour holding one) from the
-- raw rows, so an answer is exact as of its snapshot however far the job is
-- behind. With TimescaleDB, the server replaces the trigger, the tables' role
-- and both views at start-up (rollup.rs), and the API's queries stay the same.
--
-- All buckets are UTC: `date_bin` on timestamptz ignores the session's
-- TimeZone, whereas `date_trunc('hour', ts)` would follow it.

CREATE TABLE readings_1m (
    channel_id  integer NOT NULL,
    -- Start of the UTC minute.
    bucket      timestamptz NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sum         double precision NOT NULL,
    count       bigint NOT NULL,
    first_ts    timestamptz NOT NULL,
    first       double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    last        double precision NOT NULL,
    -- The key carries every column a history query reads, so a week of one
    -- channel is one index-only range scan, in time order.
    PRIMARY KEY (channel_id, bucket) INCLUDE (min, max, sum, count, first, last, last_ts)
);

CREATE TABLE readings_1h (
    channel_id  integer NOT NULL,
    -- Start of the UTC hour.
    bucket      timestamptz NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sum         double precision NOT NULL,
    count       bigint NOT NULL,
    first_ts    timestamptz NOT NULL,
    first       double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    last        double precision NOT NULL,
    -- The key carries every column a history query reads, so a week of one
    -- channel is one index-only range scan, in time order.
    PRIMARY KEY (channel_id, bucket) INCLUDE (min, max, sum, count, first, last, last_ts)
);

-- Retention deletes old minutes across all channels.
CREATE INDEX readings_1m_bucket_brin ON readings_1m USING brin (bucket);

-- Minutes whose rollup is stale or missing. Small: the job empties it about
-- once a second.
CREATE TABLE rollup_dirty (
    channel_id  integer NOT NULL,
    minute      timestamptz NOT NULL,
    PRIMARY KEY (channel_id, minute)
);

-- Runs once per INSERT statement on readings, over the rows it actually
-- inserted (the transition table holds no row skipped by ON CONFLICT).
--
-- The DO UPDATE ... WHERE false updates nothing but locks an existing mark
-- until this transaction commits. Without the lock the job could claim
-- (delete) that mark and recompute the minute from a snapshot that cannot
-- see these uncommitted rows, and nothing would mark the minute again. With
-- it the job skips the locked mark (SKIP LOCKED) and takes it next time.
CREATE FUNCTION rollup_mark_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (channel_id, minute)
    SELECT DISTINCT channel_id, date_bin('1 minute', ts, timestamptz 'epoch')
    FROM inserted
    ON CONFLICT (channel_id, minute) DO UPDATE SET channel_id = EXCLUDED.channel_id
    WHERE false;
    RETURN NULL;
END
$$;

CREATE TRIGGER readings_mark_dirty
    AFTER INSERT ON readings
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION rollup_mark_dirty();

-- Fresh minute aggregates: the rollup where it is current, the raw rows
-- where the minute is dirty.
CREATE VIEW history_1m AS
SELECT m.channel_id, m.bucket, m.min, m.max, m.sum, m.count,
       m.first_ts, m.first, m.last_ts, m.last
FROM readings_1m m
WHERE NOT EXISTS (
    SELECT 1 FROM rollup_dirty d
    WHERE d.channel_id = m.channel_id AND d.minute = m.bucket
)
UNION ALL
SELECT d.channel_id, d.minute, r.min, r.max, r.sum, r.count,
       r.first_ts, r.first, r.last_ts, r.last
FROM rollup_dirty d
CROSS JOIN LATERAL (
    SELECT min(value) AS min, max(value) AS max, sum(value) AS sum,
           count(*) AS count,
           min(ts) AS first_ts, (array_agg(value ORDER BY ts))[1] AS first,
           max(ts) AS last_ts, (array_agg(value ORDER BY ts DESC))[1] AS last
    FROM readings
    WHERE channel_id = d.channel_id
      AND ts >= d.minute AND ts < d.minute + interval '1 minute'
    HAVING count(*) > 0
) r;

-- Fresh hour aggregates: the rollup where none of the hour's minutes is
-- dirty, otherwise the hour again from fresh minutes.
CREATE VIEW history_1h AS
SELECT h.channel_id, h.bucket, h.min, h.max, h.sum, h.count,
       h.first_ts, h.first, h.last_ts, h.last
FROM readings_1h h
WHERE NOT EXISTS (
    SELECT 1 FROM rollup_dirty d
    WHERE d.channel_id = h.channel_id
      AND d.minute >= h.bucket AND d.minute < h.bucket + interval '1 hour'
)
UNION ALL
SELECT dh.channel_id, dh.hour, m.min, m.max, m.sum, m.count,
       m.first_ts, m.first, m.last_ts, m.last
FROM (
    SELECT DISTINCT channel_id, date_bin('1 hour', minute, timestamptz 'epoch') AS hour
    FROM rollup_dirty
) dh
CROSS JOIN LATERAL (
    SELECT min(min) AS min, max(max) AS max, sum(sum) AS sum,
           sum(count)::bigint AS count,
           min(first_ts) AS first_ts, (array_agg(first ORDER BY bucket))[1] AS first,
           max(last_ts) AS last_ts, (array_agg(last ORDER BY bucket DESC))[1] AS last
    FROM history_1m
    WHERE channel_id = dh.channel_id
      AND bucket >= dh.hour AND bucket < dh.hour + interval '1 hour'
    HAVING count(*) > 0
) m;
