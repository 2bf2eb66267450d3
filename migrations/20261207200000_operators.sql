-- Operators sign in: accounts, sessions, API tokens, one-time sign-in
-- links and the audit trail (server/src/auth/, server/src/audit/).

-- People. `name` is what they type and what the audit trail and an
-- acknowledgement show; it is unique whatever its case. A disabled user
-- keeps the row, so past acknowledgements and audit rows still name them.
-- `password_change_required`: the password was issued by someone else
-- (`trackside user add` prints one); the user must choose their own before
-- doing anything else.
CREATE TABLE users (
    id                       bigserial PRIMARY KEY,
    name                     text NOT NULL,
    role                     text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash            text NOT NULL,
    password_change_required boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT now(),
    disabled_at              timestamptz
);
CREATE UNIQUE INDEX users_name ON users (lower(name));

-- Browser sessions, through tower-sessions (server/src/auth/session_store.rs).
-- `id_hash` is the SHA-256 of the cookie's session id: a copy of this table
-- does not let anyone sign in. `user_id` is lifted out of the record so
-- that disabling a user, changing their role or password ends every one of
-- their sessions in one statement.
CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY,
    user_id    bigint REFERENCES users (id) ON DELETE CASCADE,
    data       jsonb NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- API tokens for scripts (curl exports, Prometheus, Grafana). Stored as the
-- SHA-256 of the token (256 random bits: a slow hash adds nothing). `role`
-- is at most the user's at creation, and a request gets the lower of the
-- token's and the user's current role; `metrics` reads /metrics only.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('metrics', 'viewer', 'operator', 'admin')),
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- One-time sign-in links (the demo's banner, `trackside user link`): a
-- short-lived token, used at most once.
CREATE TABLE signin_links (
    token_hash bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- The audit trail: who (and with which role), from where, when, did what
-- to what. Append-only: the triggers below refuse UPDATE, DELETE and
-- TRUNCATE from anyone, the application included. Removing old rows is a
-- deliberate act of the database's owner (drop the trigger, delete,
-- recreate it), never something Trackside does.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor    text,
    role     text,
    address  text,
    action   text NOT NULL,
    target   text,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action_at ON audit_log (action, at);
-- Sign-in throttling counts recent failures per account and per address.
CREATE INDEX audit_log_failed_target ON audit_log (target, at) WHERE action = 'signin.failed';
CREATE INDEX audit_log_failed_address ON audit_log (address, at) WHERE action = 'signin.failed';

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
