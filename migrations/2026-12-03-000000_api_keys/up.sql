-- Personal access tokens: a user's long-lived credential for scripts and clients. Only a hash of
-- the key is kept (it is random and long, so SHA-256 is enough and costs nothing per request);
-- the prefix is the key's first characters, shown so its owner can tell keys apart.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL,
    -- `read_only` keys may only read (GET, HEAD, OPTIONS).
    scope        text NOT NULL CHECK (scope IN ('full', 'read_only')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Updated at most every few minutes, not on every request.
    last_used_at timestamptz,
    -- NULL: never expires.
    expires_at   timestamptz
);
-- Each request looks its key up by hash.
CREATE UNIQUE INDEX api_keys_key_hash_idx ON api_keys (key_hash);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, created_at DESC);
