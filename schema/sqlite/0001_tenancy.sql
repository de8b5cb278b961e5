-- Accounts, tenants, keys, quota transfers and change versions.
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC); money is INTEGER micro-credits.

CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL UNIQUE,
    auth_kind         TEXT NOT NULL CHECK (auth_kind IN ('desktop', 'oidc')),
    refresh_token_enc BLOB NOT NULL,
    client_id         TEXT,
    client_secret_enc BLOB,
    profile_arn       TEXT,
    sso_region        TEXT NOT NULL,
    api_region        TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason   TEXT,
    max_concurrency   INTEGER,
    version           INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE account_state (
    account_id           INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    rest_until           INTEGER,
    throttled            INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    breaker              TEXT NOT NULL DEFAULT 'closed',
    updated_at           INTEGER NOT NULL
);

CREATE TABLE agents (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    balance    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    INTEGER REFERENCES agents (id),
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    quota_limit INTEGER,
    quota_used  INTEGER NOT NULL DEFAULT 0,
    rpm_limit   INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE UNIQUE INDEX users_live_name ON users (name) WHERE deleted_at IS NULL;
CREATE INDEX users_agent ON users (agent_id);

CREATE TABLE api_keys (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id       TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('inference', 'admin', 'agent')),
    user_id         INTEGER REFERENCES users (id),
    agent_id        INTEGER REFERENCES agents (id),
    name            TEXT NOT NULL,
    secret_hash     BLOB NOT NULL,
    suffix          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at      INTEGER,
    allowed_models  TEXT NOT NULL DEFAULT '[]',
    rpm_limit       INTEGER,
    max_concurrency INTEGER,
    quota_limit     INTEGER,
    quota_used      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    revoked_at      INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE INDEX api_keys_agent ON api_keys (agent_id);

CREATE TABLE quota_transfers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id            INTEGER NOT NULL REFERENCES agents (id),
    user_id             INTEGER NOT NULL REFERENCES users (id),
    amount              INTEGER NOT NULL CHECK (amount > 0),
    agent_balance_after INTEGER NOT NULL,
    created_at          INTEGER NOT NULL
);
CREATE INDEX quota_transfers_agent ON quota_transfers (agent_id);

-- One row per cache topic; a mutation sets its topic's version above every other version.
CREATE TABLE changes (
    topic   TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO changes (topic, version) VALUES
    ('keys', 0), ('accounts', 0), ('account_state', 0), ('models', 0), ('quota', 0);
