-- Usage records, model aliases/combos/prices and the audit log.

CREATE TABLE usage_records (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id         TEXT NOT NULL,
    attempt            INTEGER NOT NULL,
    user_id            INTEGER,
    agent_id           INTEGER,
    key_id             INTEGER,
    requested_model    TEXT NOT NULL,
    resolved_model     TEXT NOT NULL,
    account_id         TEXT,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    credits            REAL NOT NULL,
    status             TEXT NOT NULL,
    ttft_ms            INTEGER,
    duration_ms        INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    charged            INTEGER NOT NULL,
    UNIQUE (request_id, attempt)
);
CREATE INDEX usage_started ON usage_records (started_at);
CREATE INDEX usage_user ON usage_records (user_id, started_at);
CREATE INDEX usage_key ON usage_records (key_id, started_at);
CREATE INDEX usage_agent ON usage_records (agent_id, started_at);

CREATE TABLE model_aliases (
    alias      TEXT PRIMARY KEY,
    model_id   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- members: JSON array of model names, in order.
CREATE TABLE combo_models (
    name       TEXT PRIMARY KEY,
    members    TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE model_prices (
    model_id          TEXT PRIMARY KEY,
    input_per_m       INTEGER NOT NULL,
    output_per_m      INTEGER NOT NULL,
    cache_read_per_m  INTEGER NOT NULL,
    cache_write_per_m INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
