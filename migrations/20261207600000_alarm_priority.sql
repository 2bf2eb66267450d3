-- Alarm handling (issue 18): each exception's priority, from its severity
-- and its circuit's criticality, and what escalation and maintenance
-- windows did to it. Exceptions stored before this ranked every circuit
-- as a running line (the default of a circuit the layout does not name).

ALTER TABLE exceptions
    ADD COLUMN criticality text NOT NULL DEFAULT 'running_line'
        CHECK (criticality IN ('siding', 'loop', 'running_line')),
    ADD COLUMN base_priority text NOT NULL DEFAULT 'low'
        CHECK (base_priority IN ('low', 'medium', 'high')),
    ADD COLUMN priority text NOT NULL DEFAULT 'low'
        CHECK (priority IN ('low', 'medium', 'high')),
    ADD COLUMN escalation smallint NOT NULL DEFAULT 0 CHECK (escalation >= 0),
    ADD COLUMN escalated_at timestamptz,
    -- Raised inside a maintenance window that was still on.
    ADD COLUMN suppressed boolean NOT NULL DEFAULT false,
    ADD COLUMN window_id bigint;

UPDATE exceptions SET base_priority = CASE severity
        WHEN 'critical' THEN 'high' WHEN 'major' THEN 'high'
        WHEN 'warning' THEN 'medium' ELSE 'low' END;
UPDATE exceptions SET priority = base_priority;

CREATE INDEX exceptions_priority ON exceptions (priority, raised_at);

ALTER TABLE exception_transitions DROP CONSTRAINT exception_transitions_kind_check;
ALTER TABLE exception_transitions ADD CONSTRAINT exception_transitions_kind_check
    CHECK (kind IN ('raised', 'cleared', 'acknowledged', 'realarmed',
                    'shelved', 'unshelved', 'escalated', 'released'));

-- Raised and cleared inside a maintenance window: nobody was alarmed, so
-- it closes without an acknowledgement (and stays recorded as suppressed).
DO $$
DECLARE found text;
BEGIN
    SELECT conname INTO found FROM pg_constraint
        WHERE conrelid = 'exceptions'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%acked_at IS NOT NULL%';
    IF found IS NOT NULL THEN
        EXECUTE format('ALTER TABLE exceptions DROP CONSTRAINT %I', found);
    END IF;
END $$;
ALTER TABLE exceptions ADD CONSTRAINT exceptions_closed_acknowledged
    CHECK (open OR acked_at IS NOT NULL OR suppressed);

-- Maintenance windows: planned or begun by an operator for circuits (names
-- or patterns) or a gateway. Exceptions raised under one are suppressed.
CREATE TABLE maintenance_windows (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    circuits    text[] NOT NULL DEFAULT '{}',
    gateway_id  text,
    reason      text NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Who ended it before its planned end, or cancelled it before it began.
    ended_by    text,
    CHECK (starts_at < ends_at),
    CHECK (cardinality(circuits) > 0 OR gateway_id IS NOT NULL)
);

CREATE INDEX maintenance_windows_ends_at ON maintenance_windows (ends_at);
