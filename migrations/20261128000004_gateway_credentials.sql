-- Gateway credentials: one password per gateway id, stored as an Argon2id
-- PHC string (salt and parameters included). Provisioned before the gateway
-- first connects, so this table does not refer to `gateways`, which records
-- gateways as their first readings arrive. A revoked gateway keeps its row,
-- so an operator can see when and that it was revoked.
CREATE TABLE gateway_credentials (
    gateway_id     text PRIMARY KEY,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
