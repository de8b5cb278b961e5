-- Sign-in flows (src/login/), shared by every gateway process on this database: any process
-- answers status calls, takes profile choices, pasted addresses and cancels; one process (the
-- owner, while its lease lasts) polls the sign-in service, and another takes over when the
-- lease lapses. `view` and `plan` are JSON without secrets; `secrets_enc` (device code,
-- client secret, PKCE verifier, tokens) is AES-256-GCM like accounts.refresh_token_enc.
-- Times are Unix milliseconds.
CREATE TABLE login_flows (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    view        TEXT NOT NULL,
    plan        TEXT NOT NULL,
    secrets_enc BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    finished_at INTEGER,
    owner       TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX login_flows_open ON login_flows (finished_at, lease_until);
