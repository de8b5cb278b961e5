-- Accounts, tenants, keys, quota transfers and change versions. Money is bigint micro-credits.

CREATE TABLE accounts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    auth_kind         text NOT NULL CHECK (auth_kind IN ('desktop', 'oidc')),
    refresh_token_enc bytea NOT NULL,
    client_id         text,
    client_secret_enc bytea,
    profile_arn       text,
    sso_region        text NOT NULL,
    api_region        text NOT NULL,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason   text,
    max_concurrency   bigint,
    version           bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account_state (
    account_id           bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    rest_until           timestamptz,
    throttled            boolean NOT NULL DEFAULT false,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    breaker              text NOT NULL DEFAULT 'closed',
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    balance    bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    bigint REFERENCES agents (id),
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    quota_limit bigint,
    quota_used  bigint NOT NULL DEFAULT 0,
    rpm_limit   bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX users_live_name ON users (name) WHERE deleted_at IS NULL;
CREATE INDEX users_agent ON users (agent_id);

CREATE TABLE api_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id       text NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('inference', 'admin', 'agent')),
    user_id         bigint REFERENCES users (id),
    agent_id        bigint REFERENCES agents (id),
    name            text NOT NULL,
    secret_hash     bytea NOT NULL,
    suffix          text NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at      timestamptz,
    allowed_models  text[] NOT NULL DEFAULT '{}',
    rpm_limit       bigint,
    max_concurrency bigint,
    quota_limit     bigint,
    quota_used      bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE INDEX api_keys_agent ON api_keys (agent_id);

CREATE TABLE quota_transfers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id            bigint NOT NULL REFERENCES agents (id),
    user_id             bigint NOT NULL REFERENCES users (id),
    amount              bigint NOT NULL CHECK (amount > 0),
    agent_balance_after bigint NOT NULL CHECK (agent_balance_after >= 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quota_transfers_agent ON quota_transfers (agent_id);

-- One row per cache topic; versions come from one sequence, and every bump sends
-- NOTIFY kiro_gateway_changes with the topic as payload.
CREATE SEQUENCE change_seq;
CREATE TABLE changes (
    topic   text PRIMARY KEY,
    version bigint NOT NULL
);
INSERT INTO changes (topic, version) VALUES
    ('keys', 0), ('accounts', 0), ('account_state', 0), ('models', 0), ('quota', 0);
