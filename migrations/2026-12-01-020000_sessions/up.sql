-- Server-side sessions: a token names its session, and a session that is gone (signed out,
-- ended from the account page, or every one of a user's at a password change) revokes it at once.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What the browser or client called itself when signing in, to recognise the device.
    user_agent   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id, last_used_at DESC);
