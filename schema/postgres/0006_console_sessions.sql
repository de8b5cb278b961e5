-- Web console sessions. Only a SHA-256 of the session id is stored: a copy of the database does
-- not let anyone sign in. `key_id` is the gateway key the session was opened with (NULL for
-- ADMIN_API_KEY); the console checks on every request that this key is still active, so revoking
-- the key ends its sessions.
CREATE TABLE console_sessions (
    id_hash    BYTEA PRIMARY KEY,
    role       TEXT NOT NULL,
    key_id     BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    user_agent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_key ON console_sessions (key_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
