-- Accounts of more than one upstream (issue 11). `kind` names the upstream ('kiro' for every
-- account stored before kinds existed, 'cursor' for a Cursor Pro account). A Cursor account
-- keeps its refresh token in refresh_token_enc like a Kiro account, and adds its current
-- session token (encrypted like every secret), and the stable machine id and client key the
-- Cursor headers carry (cursor-protocol.md §4: churning them locks the account). For a Cursor
-- row, auth_kind is 'desktop' (a plain refresh-token grant) and the region columns are empty.

ALTER TABLE accounts ADD COLUMN kind text NOT NULL DEFAULT 'kiro';
ALTER TABLE accounts ADD COLUMN access_token_enc bytea;
ALTER TABLE accounts ADD COLUMN machine_id text;
ALTER TABLE accounts ADD COLUMN client_key text;
