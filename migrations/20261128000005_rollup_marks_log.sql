-- Dirty-minute marks become a log that writers only append to.
--
-- With one mark per (channel, minute) under a unique key, a writer touching a
-- minute the rollup job had just claimed had to wait for the job's whole
-- pass to commit: under sustained load the store writer spent about 40 % of
-- its time in that wait. Now each INSERT statement appends its own marks,
-- which no other transaction can see or claim until it commits, so the job
-- never rolls a minute up without a committed writer's rows and never
-- blocks one: a minute written while the job works is simply marked again
-- and recomputed by the next pass. The job claims marks by row and
-- recomputes each distinct minute once.

ALTER TABLE rollup_dirty DROP CONSTRAINT rollup_dirty_pkey;
-- The views look marks up by channel and minute.
CREATE INDEX rollup_dirty_channel_minute ON rollup_dirty (channel_id, minute);

CREATE OR REPLACE FUNCTION rollup_mark_dirty() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_dirty (channel_id, minute)
    SELECT DISTINCT channel_id, date_bin('1 minute', ts, timestamptz 'epoch')
    FROM inserted;
    RETURN NULL;
END
$$;

-- As before, but a minute marked more than once is computed from raw rows
-- once.
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
