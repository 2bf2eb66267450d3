-- Shelving (issue 18): an operator hides an exception, or a rule on a
-- circuit, for a while with a reason. The shelf is an operator's record:
-- stored before the engine hears of it, and taken back after a restart.
CREATE TABLE shelves (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id     text NOT NULL,
    -- One exception's subject, or every channel of a circuit.
    subject     text,
    circuit     text,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- When it runs out; moved earlier when someone unshelves it.
    until       timestamptz NOT NULL,
    ended_by    text,
    CHECK ((subject IS NULL) <> (circuit IS NULL)),
    CHECK (created_at < until)
);

CREATE INDEX shelves_until ON shelves (until);

-- The shelf that hides an open exception now, and until when (a closed
-- one keeps the shelf it had when it closed).
ALTER TABLE exceptions
    ADD COLUMN shelf_id bigint,
    ADD COLUMN shelved_until timestamptz;

-- What each shelf hides, counted for GET /api/shelves.
CREATE INDEX exceptions_shelf ON exceptions (shelf_id) WHERE shelf_id IS NOT NULL;
