-- The `grafana` schema: stable, read-only views of channels, readings and
-- the rollup tiers, for Grafana's PostgreSQL data source and any other SQL
-- reader. It is a public interface (docs/grafana.md): columns are added,
-- never renamed or dropped, within a version of this schema.
--
-- The role Grafana connects as (`trackside db reader-role`) may use this
-- schema and nothing else: no users, sessions, tokens, credentials, audit.
-- A view reads its tables with its owner's rights, so the reader needs no
-- grant on them; but a function a view calls runs with the reader's, which
-- is why the tier views compute a stale bucket from raw readings inline
-- instead of through the `history_<tier>` views and their functions.
--
-- Every tier view answers a bucket from its rollup row where no dirty mark
-- falls in the bucket, else from the raw readings (the same rule as the
-- `history_<tier>` views): exact whether or not the rollup job is behind.
-- The channel's name is joined inside each branch so that a query's
-- channel filter reaches the raw fallback before it aggregates.
--
-- The TimescaleDB path replaces the rollup tables with continuous
-- aggregates of the same names and columns (dropping these views with
-- them) and calls `grafana_create_views()` again afterwards.

CREATE SCHEMA grafana;
COMMENT ON SCHEMA grafana IS
    'Trackside read interface, version 1: see docs/grafana.md. Read-only.';

CREATE VIEW grafana.channels AS
SELECT c.name AS channel, c.circuit, c.parameter, c.unit,
       c.gateway_id AS gateway, c.created_at AS first_seen
FROM channels c;

CREATE VIEW grafana.readings AS
SELECT r.ts AS time, c.name AS channel, c.circuit, c.parameter, r.value
FROM readings r
JOIN channels c ON c.id = r.channel_id;

-- (Re)creates the tier views. `bucket_end` is an SQL expression of the
-- bucket start `%1$s`; `bucket_of` one of a minute `%1$s`.
CREATE PROCEDURE grafana_create_views()
LANGUAGE plpgsql
AS $$
DECLARE
    tier record;
BEGIN
    FOR tier IN
        SELECT * FROM (VALUES
            ('1m', 'readings_1m',
             '%1$s + interval ''1 minute''',
             'date_bin(''1 minute'', %1$s, timestamptz ''epoch'')'),
            ('5m', 'readings_5m',
             '%1$s + interval ''5 minutes''',
             'date_bin(''5 minutes'', %1$s, timestamptz ''epoch'')'),
            ('15m', 'readings_15m',
             '%1$s + interval ''15 minutes''',
             'date_bin(''15 minutes'', %1$s, timestamptz ''epoch'')'),
            ('1h', 'readings_1h',
             '%1$s + interval ''1 hour''',
             'date_bin(''1 hour'', %1$s, timestamptz ''epoch'')'),
            -- The yard's wall clock, as the 6-hour tier is built.
            ('6h', 'readings_6h',
             'rollup_6h_end(%1$s, (SELECT zone FROM rollup_settings))',
             'rollup_6h_start(%1$s, (SELECT zone FROM rollup_settings))')
        ) AS t (name, source, bucket_end, bucket_of)
    LOOP
        EXECUTE format($view$
            CREATE OR REPLACE VIEW grafana.readings_%1$s AS
            SELECT m.bucket AS time, c.name AS channel, c.circuit, c.parameter,
                   m.min, m.max, m.sum / m.count AS mean, m.sum, m.count,
                   m.first, m.last
            FROM %2$I m
            JOIN channels c ON c.id = m.channel_id
            WHERE NOT EXISTS (
                SELECT 1 FROM rollup_dirty d
                WHERE d.channel_id = m.channel_id
                  AND d.minute >= m.bucket AND d.minute < %3$s
            )
            UNION ALL
            SELECT d.bucket, c.name, c.circuit, c.parameter,
                   r.min, r.max, r.sum / r.count, r.sum, r.count,
                   r.first, r.last
            FROM (
                SELECT DISTINCT channel_id, %4$s AS bucket FROM rollup_dirty
            ) d
            JOIN channels c ON c.id = d.channel_id
            CROSS JOIN LATERAL (
                SELECT min(value) AS min, max(value) AS max,
                       sum(value) AS sum, count(*) AS count,
                       (array_agg(value ORDER BY ts))[1] AS first,
                       (array_agg(value ORDER BY ts DESC))[1] AS last
                FROM readings
                WHERE channel_id = d.channel_id
                  AND ts >= d.bucket AND ts < %5$s
            ) r
            WHERE r.count > 0
            $view$,
            tier.name, tier.source,
            format(tier.bucket_end, 'm.bucket'),
            format(tier.bucket_of, 'minute'),
            format(tier.bucket_end, 'd.bucket'));
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE grafana_create_views() FROM PUBLIC;

CALL grafana_create_views();
