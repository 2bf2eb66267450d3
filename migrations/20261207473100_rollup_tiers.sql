-- Rollup tiers: 5-minute, 15-minute and 6-hour rollups beside the minute
-- and hour ones, so every bucket width of the history ladder up to a day
-- is answered from at most four rows per bucket (docs/design/history.md):
--
--   tier     built from   answers widths
--   1m       readings     1, 2 min
--   5m       1m           5, 10 min
--   15m      5m           15, 30 min
--   1h       15m          1, 2, 3 h (2 and 3 h on the yard's wall clock)
--   6h       1h           6, 12 h, 1 day, on the yard's wall clock
--
-- A week at 1,000 points (15-minute buckets) reads 672 rows per channel
-- instead of 10,080 minutes; a year (12-hour buckets) 1,460 instead of
-- 8,760 hours.
--
-- The 6-hour tier follows the yard's wall clock: its buckets start at
-- local 00:00, 06:00, 12:00 and 18:00 (5 or 7 hours long across a
-- daylight-saving change), so that 12-hour and day buckets, which start at
-- local midnight, are whole 6-hour buckets. Its zone is kept in
-- `rollup_settings` and written into the views; the server sets it at
-- start and rebuilds the tier when the yard's zone changes.
--
-- Every tier keeps the invariant of the minute and hour tiers: a row is
-- exact once no dirty mark falls in its bucket, and the view
-- `history_<tier>` answers a marked bucket from the finer view.

-- Function bodies name views that the procedure below creates.
SET LOCAL check_function_bodies = off;

CREATE TABLE readings_5m (
    channel_id  integer NOT NULL,
    bucket      timestamptz NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sum         double precision NOT NULL,
    count       bigint NOT NULL,
    first_ts    timestamptz NOT NULL,
    first       double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    last        double precision NOT NULL,
    PRIMARY KEY (channel_id, bucket) INCLUDE (min, max, sum, count, first, last, last_ts)
);
CREATE INDEX readings_5m_bucket_brin ON readings_5m USING brin (bucket);

CREATE TABLE readings_15m (LIKE readings_5m);
ALTER TABLE readings_15m ADD PRIMARY KEY (channel_id, bucket)
    INCLUDE (min, max, sum, count, first, last, last_ts);
CREATE INDEX readings_15m_bucket_brin ON readings_15m USING brin (bucket);

-- Bucket: the UTC instant of the local bucket's start.
CREATE TABLE readings_6h (LIKE readings_5m);
ALTER TABLE readings_6h ADD PRIMARY KEY (channel_id, bucket)
    INCLUDE (min, max, sum, count, first, last, last_ts);

-- One row: the zone the 6-hour tier and the views were built for.
CREATE TABLE rollup_settings (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    zone      text NOT NULL
);
INSERT INTO rollup_settings (zone) VALUES ('UTC');

-- The start of the 6-hour bucket holding `t` in `zone`, and its end.
CREATE FUNCTION rollup_6h_start(t timestamptz, zone text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT date_bin('6 hours', t AT TIME ZONE zone, timestamp '2000-01-01') AT TIME ZONE zone $$;

CREATE FUNCTION rollup_6h_end(start timestamptz, zone text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT ((start AT TIME ZONE zone) + interval '6 hours') AT TIME ZONE zone $$;

-- The aggregate of a coarser tier from the finer tier's fresh rows, the
-- same for every tier but its source and its bucket: rollup_hours of
-- migration 6, with the sum of migration 20261207100000.

CREATE FUNCTION rollup_5m(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin('5 minutes', m.bucket, timestamptz 'epoch'),
           min(m.min), max(m.max),
           rollup_sum(sum(m.sum) FILTER (WHERE abs(m.sum) <= float8 '1e290'),
                      sum(m.sum * float8 '7.888609052210118e-31')
                          FILTER (WHERE NOT abs(m.sum) <= float8 '1e290')),
           sum(m.count)::bigint,
           min(m.first_ts), (array_agg(m.first ORDER BY m.bucket))[1],
           max(m.last_ts), (array_agg(m.last ORDER BY m.bucket DESC))[1]
    FROM history_1m m
    WHERE m.channel_id = p_channel AND m.bucket >= p_from AND m.bucket < p_to
    GROUP BY 1
$$;

CREATE FUNCTION rollup_15m(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin('15 minutes', m.bucket, timestamptz 'epoch'),
           min(m.min), max(m.max),
           rollup_sum(sum(m.sum) FILTER (WHERE abs(m.sum) <= float8 '1e290'),
                      sum(m.sum * float8 '7.888609052210118e-31')
                          FILTER (WHERE NOT abs(m.sum) <= float8 '1e290')),
           sum(m.count)::bigint,
           min(m.first_ts), (array_agg(m.first ORDER BY m.bucket))[1],
           max(m.last_ts), (array_agg(m.last ORDER BY m.bucket DESC))[1]
    FROM history_5m m
    WHERE m.channel_id = p_channel AND m.bucket >= p_from AND m.bucket < p_to
    GROUP BY 1
$$;

-- Hours now from quarter hours: 4 rows each instead of 60.
CREATE OR REPLACE FUNCTION rollup_hours(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin('1 hour', m.bucket, timestamptz 'epoch'),
           min(m.min), max(m.max),
           rollup_sum(sum(m.sum) FILTER (WHERE abs(m.sum) <= float8 '1e290'),
                      sum(m.sum * float8 '7.888609052210118e-31')
                          FILTER (WHERE NOT abs(m.sum) <= float8 '1e290')),
           sum(m.count)::bigint,
           min(m.first_ts), (array_agg(m.first ORDER BY m.bucket))[1],
           max(m.last_ts), (array_agg(m.last ORDER BY m.bucket DESC))[1]
    FROM history_15m m
    WHERE m.channel_id = p_channel AND m.bucket >= p_from AND m.bucket < p_to
    GROUP BY 1
$$;

-- Six-hour buckets on the wall clock of `p_zone`; an hour belongs to the
-- bucket holding its start.
CREATE FUNCTION rollup_6h(p_channel integer, p_from timestamptz, p_to timestamptz, p_zone text)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT rollup_6h_start(m.bucket, p_zone),
           min(m.min), max(m.max),
           rollup_sum(sum(m.sum) FILTER (WHERE abs(m.sum) <= float8 '1e290'),
                      sum(m.sum * float8 '7.888609052210118e-31')
                          FILTER (WHERE NOT abs(m.sum) <= float8 '1e290')),
           sum(m.count)::bigint,
           min(m.first_ts), (array_agg(m.first ORDER BY m.bucket))[1],
           max(m.last_ts), (array_agg(m.last ORDER BY m.bucket DESC))[1]
    FROM history_1h m
    WHERE m.channel_id = p_channel AND m.bucket >= p_from AND m.bucket < p_to
    GROUP BY 1
$$;

-- Every tier's exact view: the tier's rows where no dirty minute falls in
-- the bucket, else the bucket again from the finer tier's view (so from
-- raw rows, at the bottom). A recomputed row takes its bucket from the
-- marks, where a reader's range reaches. `p_zone` is the 6-hour tier's.
DROP PROCEDURE rollup_create_views();
CREATE PROCEDURE rollup_create_views(p_zone text)
LANGUAGE plpgsql
AS $$
BEGIN
    CREATE OR REPLACE VIEW history_1m AS
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
    FROM (SELECT DISTINCT channel_id, minute FROM rollup_dirty) d
    CROSS JOIN LATERAL rollup_minutes(d.channel_id, d.minute, d.minute + interval '1 minute') r;

    CREATE OR REPLACE VIEW history_5m AS
    SELECT m.channel_id, m.bucket, m.min, m.max, m.sum, m.count,
           m.first_ts, m.first, m.last_ts, m.last
    FROM readings_5m m
    WHERE NOT EXISTS (
        SELECT 1 FROM rollup_dirty d
        WHERE d.channel_id = m.channel_id
          AND d.minute >= m.bucket AND d.minute < m.bucket + interval '5 minutes'
    )
    UNION ALL
    SELECT d.channel_id, d.bucket, r.min, r.max, r.sum, r.count,
           r.first_ts, r.first, r.last_ts, r.last
    FROM (
        SELECT DISTINCT channel_id, date_bin('5 minutes', minute, timestamptz 'epoch') AS bucket
        FROM rollup_dirty
    ) d
    CROSS JOIN LATERAL rollup_5m(d.channel_id, d.bucket, d.bucket + interval '5 minutes') r;

    CREATE OR REPLACE VIEW history_15m AS
    SELECT m.channel_id, m.bucket, m.min, m.max, m.sum, m.count,
           m.first_ts, m.first, m.last_ts, m.last
    FROM readings_15m m
    WHERE NOT EXISTS (
        SELECT 1 FROM rollup_dirty d
        WHERE d.channel_id = m.channel_id
          AND d.minute >= m.bucket AND d.minute < m.bucket + interval '15 minutes'
    )
    UNION ALL
    SELECT d.channel_id, d.bucket, r.min, r.max, r.sum, r.count,
           r.first_ts, r.first, r.last_ts, r.last
    FROM (
        SELECT DISTINCT channel_id, date_bin('15 minutes', minute, timestamptz 'epoch') AS bucket
        FROM rollup_dirty
    ) d
    CROSS JOIN LATERAL rollup_15m(d.channel_id, d.bucket, d.bucket + interval '15 minutes') r;

    CREATE OR REPLACE VIEW history_1h AS
    SELECT h.channel_id, h.bucket, h.min, h.max, h.sum, h.count,
           h.first_ts, h.first, h.last_ts, h.last
    FROM readings_1h h
    WHERE NOT EXISTS (
        SELECT 1 FROM rollup_dirty d
        WHERE d.channel_id = h.channel_id
          AND d.minute >= h.bucket AND d.minute < h.bucket + interval '1 hour'
    )
    UNION ALL
    SELECT dh.channel_id, dh.hour, r.min, r.max, r.sum, r.count,
           r.first_ts, r.first, r.last_ts, r.last
    FROM (
        SELECT DISTINCT channel_id, date_bin('1 hour', minute, timestamptz 'epoch') AS hour
        FROM rollup_dirty
    ) dh
    CROSS JOIN LATERAL rollup_hours(dh.channel_id, dh.hour, dh.hour + interval '1 hour') r;

    EXECUTE format($view$
    CREATE OR REPLACE VIEW history_6h AS
    SELECT h.channel_id, h.bucket, h.min, h.max, h.sum, h.count,
           h.first_ts, h.first, h.last_ts, h.last
    FROM readings_6h h
    WHERE NOT EXISTS (
        SELECT 1 FROM rollup_dirty d
        WHERE d.channel_id = h.channel_id
          AND d.minute >= h.bucket AND d.minute < rollup_6h_end(h.bucket, %1$L)
    )
    UNION ALL
    SELECT d.channel_id, d.bucket, r.min, r.max, r.sum, r.count,
           r.first_ts, r.first, r.last_ts, r.last
    FROM (
        SELECT DISTINCT channel_id, rollup_6h_start(minute, %1$L) AS bucket
        FROM rollup_dirty
    ) d
    CROSS JOIN LATERAL rollup_6h(d.channel_id, d.bucket, rollup_6h_end(d.bucket, %1$L), %1$L) r
    $view$, p_zone);
END
$$;

CALL rollup_create_views('UTC');

-- Existing rollups fill the new tiers: 5 and 15 minutes from the minutes
-- (fresh through the views), six hours from the hours in UTC until the
-- server sets the yard's zone at its next start and rebuilds them.
INSERT INTO readings_5m
SELECT c.id, r.* FROM channels c
CROSS JOIN LATERAL rollup_5m(c.id, '-infinity', 'infinity') r;
INSERT INTO readings_15m
SELECT c.id, r.* FROM channels c
CROSS JOIN LATERAL rollup_15m(c.id, '-infinity', 'infinity') r;
INSERT INTO readings_6h
SELECT c.id, r.* FROM channels c
CROSS JOIN LATERAL rollup_6h(c.id, '-infinity', 'infinity', 'UTC') r;
