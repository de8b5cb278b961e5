-- Stored Responses answers (`POST /v1/responses` with `store: true`): the response object for
-- `GET /v1/responses/{id}` and the conversation a `previous_response_id` continues. A row is
-- visible only to its owner (`user:<id>` or `key:<id>`); times are Unix milliseconds, as the
-- gateway computes expiry itself.

CREATE TABLE stored_responses (
    owner      text   NOT NULL,
    id         text   NOT NULL,
    response   text   NOT NULL,
    items      text   NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (owner, id)
);

CREATE INDEX stored_responses_expiry ON stored_responses (expires_at);
