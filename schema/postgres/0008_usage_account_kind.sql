-- Usage rows name the kind of account that served them (issue 11: a pool holds Kiro and Cursor
-- accounts), and say whether their token counts are the gateway's own estimate (`estimated`:
-- the upstream reported neither counts nor a context share; Cursor never does). Rows written
-- before this migration have no kind and count as not estimated.

ALTER TABLE usage_records ADD COLUMN account_kind text;
ALTER TABLE usage_records ADD COLUMN estimated boolean NOT NULL DEFAULT false;
