-- The backbone schema: gateways, channels, readings, rejected messages.
-- Plain PostgreSQL; the TimescaleDB path (hypertable, compression,
-- continuous aggregates) is layered on by a later migration when the
-- extension is present.

CREATE TABLE gateways (
    id          text PRIMARY KEY,
    first_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    circuit     text NOT NULL,
    parameter   text NOT NULL,
    unit        text,
    -- The gateway that first published the channel.
    gateway_id  text NOT NULL REFERENCES gateways (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (name = circuit || '/' || parameter)
);

-- One row per reading. (channel_id, ts) is the identity of a reading: a
-- re-sent reading conflicts and is skipped, so gateways may retry freely.
-- No foreign key to channels: the store writer registers a channel before
-- writing its first reading, and a key check per row would cost the hot path.
CREATE TABLE readings (
    channel_id  integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (channel_id, ts)
);

-- Time-range scans across all channels (exports, retention) read the table
-- in insertion order, which BRIN summarises in a few pages.
CREATE INDEX readings_ts_brin ON readings USING brin (ts);

-- Payloads (or single readings of a batch) that could not be decoded, kept
-- whole for an integrator to inspect.
CREATE TABLE rejected_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    gateway_id   text,
    payload      bytea NOT NULL,
    reason       text NOT NULL
);

CREATE INDEX rejected_messages_received_at ON rejected_messages (received_at);
