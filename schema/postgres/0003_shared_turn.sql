-- Gateway processes sharing this database, and the round-robin turn they share while there
-- is more than one of them (src/tenancy/turn.rs). The turn is a sequence: nextval is atomic
-- across sessions, takes no row lock and waits for no commit.

CREATE TABLE gateway_instances (
    instance text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE pool_turn;

INSERT INTO changes (topic, version) VALUES ('instances', 0);
