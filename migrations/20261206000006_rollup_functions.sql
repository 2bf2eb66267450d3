-- One home for the rollup aggregates.
--
-- A history answer is exact only if everything that computes a minute or an
-- hour computes it the same way: the rollup job, the bulk rebuild, and the
-- views that answer dirty minutes from raw rows. Each used to spell the
-- aggregate out (migrations 2 and 5, and server/src/store/rollup.rs); these
-- two functions are now its only definition, and the job, the rebuild and
-- the views call them.
--
-- Both are plain SQL, STABLE, not STRICT, and a single SELECT, so PostgreSQL
-- inlines them into the calling statement: the plans are those of the
-- statements they replace (an index range scan per channel and range).
--
-- All buckets are UTC: `date_bin` on timestamptz ignores the session's
-- TimeZone.

-- The minutes of one channel's raw readings in [p_from, p_to).
CREATE FUNCTION rollup_minutes(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin('1 minute', r.ts, timestamptz 'epoch'),
           min(r.value), max(r.value), sum(r.value), count(*),
           min(r.ts), (array_agg(r.value ORDER BY r.ts))[1],
           max(r.ts), (array_agg(r.value ORDER BY r.ts DESC))[1]
    FROM readings r
    WHERE r.channel_id = p_channel AND r.ts >= p_from AND r.ts < p_to
    GROUP BY 1
$$;

-- The hours of one channel in [p_from, p_to), from its fresh minutes
-- (`history_1m`: the rollup where current, raw rows where dirty), so an
-- hour is exact whatever the state of its minutes' marks.
CREATE FUNCTION rollup_hours(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin('1 hour', m.bucket, timestamptz 'epoch'),
           min(m.min), max(m.max), sum(m.sum), sum(m.count)::bigint,
           min(m.first_ts), (array_agg(m.first ORDER BY m.bucket))[1],
           max(m.last_ts), (array_agg(m.last ORDER BY m.bucket DESC))[1]
    FROM history_1m m
    WHERE m.channel_id = p_channel AND m.bucket >= p_from AND m.bucket < p_to
    GROUP BY 1
$$;

-- The views of migrations 2 and 5, with the aggregates taken from above.
CREATE OR REPLACE VIEW history_1m AS
SELECT m.channel_id, m.bucket, m.min, m.max, m.sum, m.count,
       m.first_ts, m.first, m.last_ts, m.last
FROM readings_1m m
WHERE NOT EXISTS (
    SELECT 1 FROM rollup_dirty d
    WHERE d.channel_id = m.channel_id AND d.minute = m.bucket
)
UNION ALL
SELECT d.channel_id, r.bucket, r.min, r.max, r.sum, r.count,
       r.first_ts, r.first, r.last_ts, r.last
FROM (SELECT DISTINCT channel_id, minute FROM rollup_dirty) d
CROSS JOIN LATERAL rollup_minutes(d.channel_id, d.minute, d.minute + interval '1 minute') r;

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
SELECT dh.channel_id, r.bucket, r.min, r.max, r.sum, r.count,
       r.first_ts, r.first, r.last_ts, r.last
FROM (
    SELECT DISTINCT channel_id, date_bin('1 hour', minute, timestamptz 'epoch') AS hour
    FROM rollup_dirty
) dh
CROSS JOIN LATERAL rollup_hours(dh.channel_id, dh.hour, dh.hour + interval '1 hour') r;
