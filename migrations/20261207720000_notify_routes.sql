-- What reaches each user by e-mail (issue 18): their address and routes
-- (least priority, circuit patterns, hours in the yard's zone), edited by
-- the user on their settings page or by an admin, read by the e-mail
-- sender. Goes with the user.
CREATE TABLE notify_settings (
    user_id    bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email      text,
    -- A JSON array of trackside_wire::NotifyRoute.
    routes     jsonb NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL DEFAULT now()
);
