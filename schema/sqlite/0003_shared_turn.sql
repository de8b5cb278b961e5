-- Gateway processes sharing this database, and the round-robin turn they share while there
-- is more than one of them (src/tenancy/turn.rs).

CREATE TABLE gateway_instances (
    instance TEXT PRIMARY KEY,
    seen_at  INTEGER NOT NULL
);

CREATE TABLE pool_turn (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    turn INTEGER NOT NULL
);
INSERT INTO pool_turn (id, turn) VALUES (1, 0);

INSERT INTO changes (topic, version) VALUES ('instances', 0);
