-- Exceptions raised by the rule engine, and every transition of each.
-- An exception is open until it is both cleared and acknowledged; the
-- partial unique index makes "one open exception per rule and subject" a
-- property of the database, not only of the engine.

CREATE TABLE exceptions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id         text NOT NULL,
    kind            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    -- A channel name, or a gateway id for gateway_offline.
    subject         text NOT NULL,
    circuit         text,
    gateway_id      text,
    message         text NOT NULL,
    value           double precision,
    active          boolean NOT NULL,
    open            boolean NOT NULL,
    raised_at       timestamptz NOT NULL,
    last_raised_at  timestamptz NOT NULL,
    cleared_at      timestamptz,
    acked_at        timestamptz,
    acked_by        text,
    ack_comment     text,
    occurrences     integer NOT NULL DEFAULT 1,
    CHECK (open OR NOT active),
    CHECK (open OR acked_at IS NOT NULL)
);

CREATE UNIQUE INDEX exceptions_one_open ON exceptions (rule_id, subject) WHERE open;
CREATE INDEX exceptions_raised_at ON exceptions (raised_at);
CREATE INDEX exceptions_circuit ON exceptions (circuit, raised_at);

CREATE TABLE exception_transitions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exception_id  bigint NOT NULL REFERENCES exceptions (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('raised', 'cleared', 'acknowledged', 'realarmed')),
    value         double precision,
    message       text NOT NULL,
    actor         text,
    comment       text
);

CREATE INDEX exception_transitions_exception ON exception_transitions (exception_id, id);
