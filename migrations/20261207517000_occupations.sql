-- Occupation events (issue 17): one row per occupation of a track circuit,
-- derived from stored readings by the health job (server/src/health/).
--
-- The job keeps a watermark per circuit (occupation_progress): up to there
-- the table is exact. Readings that land behind it (a gateway's backlog, a
-- late reading) leave a mark in occupation_marks, copied from the rollup's
-- dirty marks in the same transaction as the readings, so the job derives
-- that stretch again and replaces what it stored.

CREATE TABLE occupations (
    circuit           text NOT NULL,
    start_ts          timestamptz NOT NULL,
    end_ts            timestamptz NOT NULL,
    class             text NOT NULL CHECK (class IN ('flick', 'normal', 'long')),
    drop_value        double precision,
    pick_value        double precision,
    residual_min      double precision,
    residual_max      double precision,
    current_mean      double precision,
    current_sd        double precision,
    missing_readings  integer NOT NULL,
    readings          integer NOT NULL,
    PRIMARY KEY (circuit, start_ts),
    CHECK (end_ts >= start_ts)
);

CREATE TABLE occupation_progress (
    circuit     text PRIMARY KEY,
    -- Exact up to here.
    derived_to  timestamptz NOT NULL,
    -- Occupations ending up to here were judged by the rules already.
    judged_to   timestamptz
);

-- Appended to, never updated: the job claims marks by deleting them.
CREATE TABLE occupation_marks (
    circuit  text NOT NULL,
    minute   timestamptz NOT NULL
);
CREATE INDEX occupation_marks_circuit ON occupation_marks (circuit, minute);

-- Every mark on the rollup log (every insert on the plain path, late
-- readings on TimescaleDB) of a channel an occupation is made of.
CREATE FUNCTION occupation_mark() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO occupation_marks (circuit, minute)
    SELECT DISTINCT c.circuit, i.minute
    FROM inserted i
    JOIN channels c ON c.id = i.channel_id
    WHERE c.parameter IN ('relay_state', 'relay_voltage', 'feed_current');
    RETURN NULL;
END
$$;

CREATE TRIGGER rollup_dirty_marks_occupations
    AFTER INSERT ON rollup_dirty
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION occupation_mark();

-- The health score (docs/design/health.md): the latest per circuit, with
-- what lowered it, and one row per circuit and day in the yard's zone.
CREATE TABLE circuit_health (
    circuit     text PRIMARY KEY,
    score       double precision NOT NULL,
    at          timestamptz NOT NULL,
    deductions  jsonb NOT NULL,
    occupations integer NOT NULL
);

CREATE TABLE circuit_health_daily (
    circuit  text NOT NULL,
    day      date NOT NULL,
    lowest   double precision NOT NULL,
    last     double precision NOT NULL,
    PRIMARY KEY (circuit, day)
);
