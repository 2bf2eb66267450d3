-- Exception transitions judged while the database was unreachable wait in
-- Trackside's journal and are written when it returns; a crash between
-- the write and the journal's record of it writes them again. This key
-- makes that harmless: an exception cannot go through the same kind of
-- transition twice at the same instant.

DELETE FROM exception_transitions a
    USING exception_transitions b
    WHERE a.exception_id = b.exception_id AND a.at = b.at AND a.kind = b.kind AND a.id > b.id;

CREATE UNIQUE INDEX exception_transitions_once
    ON exception_transitions (exception_id, at, kind);
