-- Rollup sums that cannot overflow, and averages that stay honest.
--
-- Any finite double is a valid reading, and `sum(double precision)` raises
-- "value out of range: overflow" as soon as a running total passes
-- ±1.8e308: two readings of 1.797e308 in one minute made every rollup pass
-- fail, and with it the rollups of every channel. The sums below cannot
-- raise:
--
-- - a value with |v| <= 1e290 (every real reading) is summed in double
--   precision as before: fewer than 1.7e18 of them cannot reach 1.8e308,
--   and no rollup or history statement ever sums that many rows;
-- - a larger value (or an infinite or NaN sum of a finer rollup) is summed
--   scaled by 2^-100, exactly (scaling by a power of two is exact above the
--   subnormal range), where no count of them can overflow either;
-- - `rollup_sum` adds the two parts in the scaled range and scales back,
--   saturating: a total beyond ±1.8e308 is ±Infinity, +Infinity and
--   -Infinity together (hours from saturated minutes) are NaN.
--
-- For ordinary data the result is bit for bit the sum it always was.
-- `rollup_avg` is sum / count where the sum is finite; where it is not, the
-- mean of the raw readings, computed in the scaled range, where it is always
-- finite (NULL once raw retention has deleted them).

-- PostgreSQL's float arithmetic raises an error where IEEE 754 would round:
-- on overflow to infinity, and on underflow to zero (a product or quotient
-- of nonzero numbers that rounds to 0). The functions below use additions
-- freely (they never underflow) and multiply or divide only where neither
-- can happen.
--
-- Constants: 2^-100 = 7.888609052210118e-31, 2^100 = 1.2676506002282294e30,
-- and 1.4181298336770848e278 is the largest double times 2^-100, so a
-- scaled value up to it scales back without overflow.

-- A scaled sum back in the double range, saturating at ±Infinity.
CREATE FUNCTION rollup_unscale(scaled double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        -- PostgreSQL orders NaN above every number, and NaN = NaN.
        WHEN scaled = float8 'NaN' THEN scaled
        WHEN abs(scaled) <= float8 '1.4181298336770848e278'
            THEN scaled * float8 '1.2676506002282294e30'
        WHEN scaled > 0 THEN float8 'Infinity'
        ELSE float8 '-Infinity'
    END
$$;

-- x / n, where a quotient too small for a double is 0 instead of an error.
CREATE FUNCTION rollup_div(x double precision, n bigint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN x = 0 OR NOT abs(x) < float8 '1e-280' THEN x / n
        -- Tiny: divide at 2^200 times the size, then scale back where the
        -- result is not below half the smallest subnormal (2^-875 here).
        WHEN abs(x * float8 '1.6069380442589903e60' / n) <= float8 '3.9696644133184383e-264'
            THEN 0
        ELSE x * float8 '1.6069380442589903e60' / n * float8 '6.223015277861142e-61'
    END
$$;

-- The sum of two parts: `ordinary`, the plain sum of the values with
-- |v| <= 1e290, and `scaled`, the sum of the others times 2^-100. A nonzero
-- scaled part is at least about 1e244 (a sum of multiples of the smallest
-- such value's last digit), so an ordinary part below 1e-200 cannot change
-- it and is left out rather than scaled (which would underflow).
--
-- It calls no other function of ours: TimescaleDB materialises continuous
-- aggregates with a search_path of pg_catalog only, where the body could
-- not find one. (It repeats rollup_unscale's steps instead.)
CREATE FUNCTION rollup_sum(ordinary double precision, scaled double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN scaled IS NULL THEN ordinary
        WHEN scaled = float8 'NaN' THEN scaled
        WHEN scaled = 0 THEN coalesce(ordinary, 0)
        WHEN abs(CASE WHEN abs(coalesce(ordinary, 0)) < float8 '1e-200' THEN scaled
                      ELSE scaled + ordinary * float8 '7.888609052210118e-31' END)
             <= float8 '1.4181298336770848e278'
            THEN CASE WHEN abs(coalesce(ordinary, 0)) < float8 '1e-200' THEN scaled
                      ELSE scaled + ordinary * float8 '7.888609052210118e-31' END
                 * float8 '1.2676506002282294e30'
        WHEN CASE WHEN abs(coalesce(ordinary, 0)) < float8 '1e-200' THEN scaled
                  ELSE scaled + ordinary * float8 '7.888609052210118e-31' END > 0
            THEN float8 'Infinity'
        ELSE float8 '-Infinity'
    END
$$;

-- The mean of one channel's raw readings in [p_from, p_to), finite for any
-- finite readings. Only called for a bucket whose sum is not finite.
CREATE FUNCTION rollup_mean(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN count(*) = 0 THEN NULL
        WHEN coalesce(sum(r.value * float8 '7.888609052210118e-31')
                          FILTER (WHERE NOT abs(r.value) <= float8 '1e290'), 0) = 0
            THEN rollup_div(coalesce(sum(r.value) FILTER (WHERE abs(r.value) <= float8 '1e290'), 0),
                            count(*))
        -- The mean of the scaled values is at most the largest of them, so
        -- it scales back finite (rollup_unscale may saturate an ulp over;
        -- readers clamp a mean to the bucket's min and max).
        ELSE rollup_unscale(rollup_div(
            sum(r.value * float8 '7.888609052210118e-31')
                FILTER (WHERE NOT abs(r.value) <= float8 '1e290')
            + CASE WHEN abs(coalesce(sum(r.value) FILTER (WHERE abs(r.value) <= float8 '1e290'), 0))
                        < float8 '1e-200' THEN 0
                   ELSE sum(r.value) FILTER (WHERE abs(r.value) <= float8 '1e290')
                        * float8 '7.888609052210118e-31' END,
            count(*)))
    END
    FROM readings r
    WHERE r.channel_id = p_channel AND r.ts >= p_from AND r.ts < p_to
$$;

-- A bucket's average: sum / count, or the raw readings' mean where the sum
-- is beyond the double range. The CASE evaluates `rollup_mean` only then.
CREATE FUNCTION rollup_avg(p_sum double precision, p_count bigint,
                           p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_count = 0 THEN NULL
        WHEN p_sum > float8 '-Infinity' AND p_sum < float8 'Infinity' THEN rollup_div(p_sum, p_count)
        ELSE rollup_mean(p_channel, p_from, p_to)
    END
$$;

-- The aggregates of migration 6, with the sums from above.
CREATE OR REPLACE FUNCTION rollup_minutes(p_channel integer, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket timestamptz, min double precision, max double precision,
    sum double precision, count bigint,
    first_ts timestamptz, first double precision,
    last_ts timestamptz, last double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin('1 minute', r.ts, timestamptz 'epoch'),
           min(r.value), max(r.value),
           rollup_sum(sum(r.value) FILTER (WHERE abs(r.value) <= float8 '1e290'),
                      sum(r.value * float8 '7.888609052210118e-31')
                          FILTER (WHERE NOT abs(r.value) <= float8 '1e290')),
           count(*),
           min(r.ts), (array_agg(r.value ORDER BY r.ts))[1],
           max(r.ts), (array_agg(r.value ORDER BY r.ts DESC))[1]
    FROM readings r
    WHERE r.channel_id = p_channel AND r.ts >= p_from AND r.ts < p_to
    GROUP BY 1
$$;

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
    FROM history_1m m
    WHERE m.channel_id = p_channel AND m.bucket >= p_from AND m.bucket < p_to
    GROUP BY 1
$$;

-- The exact views of migration 6, as a procedure, so that the TimescaleDB
-- set-up (server/src/store/rollup/) recreates exactly these over its
-- continuous aggregates: both paths keep dirty marks and answer a marked
-- minute from raw rows.
--
-- The recomputed rows take their bucket from the mark, not from the
-- function's output: a reader's range on `bucket` then reaches into the
-- marks (`WHERE minute >= ...`), so only the marked minutes of the range
-- are recomputed. (Migration 6 took it from the output, where no filter
-- can reach, and recomputed every marked minute of the channel for every
-- hour read: seconds with a backlog of marks, and worse on hypertables.)
CREATE PROCEDURE rollup_create_views()
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
END
$$;

CALL rollup_create_views();
