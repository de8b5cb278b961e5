-- Daily usage rollup (src/store/usage_daily.rs): one row per UTC day, user, key, agent,
-- account, account kind and resolved model, kept in step with usage_records by the usage insert (same
-- transaction), so whole-day usage questions read this instead of every usage row.
-- "None" is 0 for the ids and '' for the account and its kind (key columns cannot be NULL).

CREATE TABLE usage_daily (
    day                INTEGER NOT NULL, -- days since 1970-01-01 UTC
    user_id            INTEGER NOT NULL,
    key_id             INTEGER NOT NULL,
    agent_id           INTEGER NOT NULL,
    account_id         TEXT NOT NULL,
    model              TEXT NOT NULL,
    account_kind       TEXT NOT NULL,
    requests           INTEGER NOT NULL,
    errors             INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    credits            REAL NOT NULL,
    charged            INTEGER NOT NULL,
    estimated          INTEGER NOT NULL, -- requests whose token counts are estimates
    PRIMARY KEY (day, user_id, key_id, agent_id, account_id, model, account_kind)
) WITHOUT ROWID;
CREATE INDEX usage_daily_user ON usage_daily (user_id, day);
CREATE INDEX usage_daily_key ON usage_daily (key_id, day);
CREATE INDEX usage_daily_agent ON usage_daily (agent_id, day);

-- Backfill from the rows already stored.
INSERT INTO usage_daily
SELECT started_at / 86400000, COALESCE(user_id, 0), COALESCE(key_id, 0), COALESCE(agent_id, 0),
       COALESCE(account_id, ''), resolved_model, COALESCE(account_kind, ''), COUNT(*), SUM(status <> 'ok'),
       SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
       SUM(credits), SUM(charged),
       SUM(estimated)
FROM usage_records
GROUP BY 1, 2, 3, 4, 5, 6, 7;
