-- Alarm floods (issue 18, item 5): more raises in a window than one
-- operator can take in (exceptions::flood). One row per flood, replaced
-- as it changes; `ended_at` NULL while it is on, so a restart or a
-- takeover resumes it. Its id is its start in Unix ms (the engine names
-- it without waiting for the database).
CREATE TABLE floods (
    id          bigint PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    -- The most raises within one window during it.
    peak        bigint NOT NULL CHECK (peak >= 0),
    -- Raises counted while it was on, those that started it included.
    total       bigint NOT NULL CHECK (total >= 0),
    -- The threshold it was judged by: more than max_raises in window_s.
    max_raises  bigint NOT NULL,
    window_s    bigint NOT NULL,
    -- Per group (kind and gateway, circuit or yard): the count, first and
    -- latest raise, highest priority, circuits, what was notified, the
    -- summary in words (trackside_wire::FloodGroupInfo).
    groups      jsonb NOT NULL DEFAULT '[]',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX floods_time ON floods (started_at, ended_at);

-- Each exception announced during a flood knows its flood and group, so
-- the list can show the group as one row. No foreign key: the exception
-- may be stored (or journalled) before its flood's row is written.
ALTER TABLE exceptions
    ADD COLUMN flood_id bigint,
    ADD COLUMN flood_group text,
    ADD CHECK ((flood_id IS NULL) = (flood_group IS NULL));
CREATE INDEX exceptions_flood ON exceptions (flood_id, flood_group) WHERE flood_id IS NOT NULL;

-- A raise that started a flood joins its group afterwards: 'grouped'.
ALTER TABLE exception_transitions DROP CONSTRAINT exception_transitions_kind_check;
ALTER TABLE exception_transitions ADD CONSTRAINT exception_transitions_kind_check
    CHECK (kind IN ('raised', 'cleared', 'acknowledged', 'realarmed',
                    'shelved', 'unshelved', 'escalated', 'released', 'grouped'));

-- A flood's summaries go through the outbox too: a row is of one
-- exception or of one flood.
ALTER TABLE notification_outbox
    ALTER COLUMN exception_id DROP NOT NULL,
    ADD COLUMN flood_id bigint,
    ADD CHECK ((exception_id IS NULL) <> (flood_id IS NULL));
