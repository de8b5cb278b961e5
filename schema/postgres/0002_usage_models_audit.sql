-- Usage records, model aliases/combos/prices and the audit log.

CREATE TABLE usage_records (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id         text NOT NULL,
    attempt            bigint NOT NULL,
    user_id            bigint,
    agent_id           bigint,
    key_id             bigint,
    requested_model    text NOT NULL,
    resolved_model     text NOT NULL,
    account_id         text,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    credits            double precision NOT NULL,
    status             text NOT NULL,
    ttft_ms            bigint,
    duration_ms        bigint NOT NULL,
    started_at         timestamptz NOT NULL,
    charged            bigint NOT NULL,
    UNIQUE (request_id, attempt)
);
CREATE INDEX usage_started ON usage_records (started_at);
CREATE INDEX usage_user ON usage_records (user_id, started_at);
CREATE INDEX usage_key ON usage_records (key_id, started_at);
CREATE INDEX usage_agent ON usage_records (agent_id, started_at);

CREATE TABLE model_aliases (
    alias      text PRIMARY KEY,
    model_id   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE combo_models (
    name       text PRIMARY KEY,
    members    text[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_prices (
    model_id          text PRIMARY KEY,
    input_per_m       bigint NOT NULL,
    output_per_m      bigint NOT NULL,
    cache_read_per_m  bigint NOT NULL,
    cache_write_per_m bigint NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor       text NOT NULL,
    action      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    detail      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_created ON audit_log (created_at);
