-- Stored Responses answers (`POST /v1/responses` with `store: true`): the response object for
-- `GET /v1/responses/{id}` and the conversation a `previous_response_id` continues. A row is
-- visible only to its owner (`user:<id>` or `key:<id>`); times are Unix milliseconds.

CREATE TABLE stored_responses (
    owner      TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    response   TEXT    NOT NULL,
    items      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, id)
);

CREATE INDEX stored_responses_expiry ON stored_responses (expires_at);
