-- Sign-in flows (src/login/), shared by every gateway process on this database: any process
-- answers status calls, takes profile choices, pasted addresses and cancels; one process (the
-- owner, while its lease lasts, by the database's clock) polls the sign-in service, and
-- another takes over when the lease lapses. `view` and `plan` are JSON without secrets;
-- `secrets_enc` (device code, client secret, PKCE verifier, tokens) is AES-256-GCM like
-- accounts.refresh_token_enc.
CREATE TABLE login_flows (
    id          text PRIMARY KEY,
    status      text NOT NULL,
    version     bigint NOT NULL,
    view        text NOT NULL,
    plan        text NOT NULL,
    secrets_enc bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    finished_at timestamptz,
    owner       text,
    lease_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_flows_open ON login_flows (lease_until) WHERE finished_at IS NULL;
