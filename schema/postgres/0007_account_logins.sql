-- How an account was signed in (src/login/): the method, the IAM Identity Center start URL,
-- and when the OIDC client registration (client id + secret on `accounts`) expires, after
-- which refreshes fail and the account needs a new sign-in.

CREATE TABLE account_logins (
    account_id               bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    method                   text NOT NULL,
    start_url                text,
    client_secret_expires_at timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now()
);
