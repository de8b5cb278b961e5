-- The last Kiro usage-limits snapshot of each account (getUsageLimits, reduced to used, limit,
-- reset, subscription, e-mail: see layers/src/store/usage_limits.rs), and the last failure.

CREATE TABLE account_usage_limits (
    account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    snapshot   jsonb,       -- the last successful fetch
    fetched_at timestamptz, -- when that was
    error      text,        -- why the last fetch failed (NULL after a success)
    error_at   timestamptz
);
