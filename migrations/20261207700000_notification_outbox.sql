-- The notification outbox (issue 18): every notification to send (a
-- webhook POST, a chat line, an e-mail), kept until it is sent or given
-- up, so a dead mail server or webhook receiver loses nothing across a
-- restart. Written and drained by the instance holding the engine role
-- (exceptions::outbox); finished rows are deleted after 7 days.
CREATE TABLE notification_outbox (
    id              bigserial PRIMARY KEY,
    -- 'webhook', 'chat' or 'email'.
    channel         text NOT NULL CHECK (channel IN ('webhook', 'chat', 'email')),
    -- Which configured sender drains the row: a digest of a webhook's URL
    -- (which may hold a token, so it is not stored), or 'email'.
    receiver        text NOT NULL,
    -- Who it goes to as people may read it: the URL without credentials
    -- or query, or the e-mail address.
    target          text NOT NULL,
    exception_id    bigint NOT NULL,
    severity        text NOT NULL,
    -- What is sent: the webhook's JSON, {"text": ...} for chat,
    -- {"subject": ..., "text": ...} for e-mail.
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    given_up_at     timestamptz
);

CREATE INDEX notification_outbox_pending ON notification_outbox (receiver, id)
    WHERE sent_at IS NULL AND given_up_at IS NULL;
CREATE INDEX notification_outbox_created ON notification_outbox (created_at);
