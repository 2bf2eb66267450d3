-- The demo yard's simulated history: which stretches have been written, so
-- a second start reuses them and fills only the gap since the last run.
-- Each row is written in the same transaction as its readings.

CREATE TABLE demo_backfill (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The demo's first start: its slow sags are planned from it, so every
    -- later start simulates the same yard.
    epoch       timestamptz NOT NULL,
    from_ts     timestamptz NOT NULL,
    to_ts       timestamptz NOT NULL,
    readings    bigint NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (from_ts < to_ts)
);
