-- The last Kiro usage-limits snapshot of each account (getUsageLimits, reduced to used, limit,
-- reset, subscription, e-mail: see layers/src/store/usage_limits.rs), and the last failure.

CREATE TABLE account_usage_limits (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    snapshot   TEXT,    -- JSON of the last successful fetch
    fetched_at INTEGER, -- when that was
    error      TEXT,    -- why the last fetch failed (NULL after a success)
    error_at   INTEGER
);
