-- Rate and concurrency counters shared by every gateway process on this database
-- (src/tenancy/shared_limits/postgres.rs). Used only while SHARED_LIMITS selects PostgreSQL.
--
-- limit_windows: requests admitted per subject (`key:12`, `user:3`, `agent:5`) in a fixed
-- window numbered from the epoch by the DATABASE's clock, so processes with skewed clocks
-- still agree on the window. Rows older than the previous window are deleted periodically.
--
-- Both tables are UNLOGGED: counters live a minute, so they are not worth a WAL write per
-- request. After a PostgreSQL crash (or on a promoted replica) they start empty: windows and
-- slots restart from zero once, as when a process restarts with SHARED_LIMITS=off.
CREATE UNLOGGED TABLE limit_windows (
    subject      text    NOT NULL,
    window_index bigint  NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (subject, window_index)
);

-- limit_slots: one row per request in flight of a subject with a concurrency limit. A row
-- expires unless its process renews it, so a crashed process does not leak slots.
CREATE UNLOGGED TABLE limit_slots (
    lease      text        PRIMARY KEY,
    subject    text        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX limit_slots_subject ON limit_slots (subject);

-- Counts one request unless `p_limit` were counted in the current window already; one
-- statement, atomic under concurrency (the conflicting row is locked by the upsert).
CREATE FUNCTION kiro_limit_hit(p_subject text, p_limit integer, p_window_ms bigint,
                               OUT admitted boolean, OUT window_left_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    now_ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    idx    bigint := now_ms / p_window_ms;
    counted integer;
BEGIN
    window_left_ms := (idx + 1) * p_window_ms - now_ms;
    INSERT INTO limit_windows AS w (subject, window_index, hits)
    VALUES (p_subject, idx, 1)
    ON CONFLICT (subject, window_index) DO UPDATE SET hits = w.hits + 1 WHERE w.hits < p_limit
    RETURNING w.hits INTO counted;
    admitted := counted IS NOT NULL;
END $$;

-- Takes one of `p_cap` slots of `p_subject` for `p_lease`. Slot takers of one subject queue
-- on a transaction-scoped advisory lock, so counting and inserting cannot interleave.
CREATE FUNCTION kiro_limit_acquire(p_subject text, p_cap integer, p_lease text, p_ttl_ms bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('kiro-limit-slots:' || p_subject, 0));
    DELETE FROM limit_slots WHERE subject = p_subject AND expires_at < clock_timestamp();
    IF (SELECT count(*) FROM limit_slots WHERE subject = p_subject) >= p_cap THEN
        RETURN false;
    END IF;
    INSERT INTO limit_slots (lease, subject, expires_at)
    VALUES (p_lease, p_subject, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (lease) DO NOTHING;
    RETURN true;
END $$;

-- Admits one request: takes, for every subject i of the request, a slot of `p_caps[i]`
-- (lease `p_leases[i]`) and a hit of the window of `p_rpm[i]` (0 = no such limit), all or
-- nothing, in one round trip. Subjects are visited in text order, each slot taker first under
-- its subject's advisory lock, then its window row, so two requests sharing subjects always
-- lock them in the same order (no deadlock). On the first refusal what was taken is undone in
-- this same transaction (the locks hide the intermediate state from everyone else):
-- `refused_at` is the refused subject's 1-based position, 0 when admitted; `refused_kind` is
-- `concurrency` or `rate`; `window_left_ms` says when the current window ends.
CREATE FUNCTION kiro_limit_admit(p_subjects text[], p_rpm integer[], p_caps integer[],
                                 p_leases text[], p_window_ms bigint, p_ttl_ms bigint,
                                 OUT refused_at integer, OUT refused_kind text,
                                 OUT window_left_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    now_ms  bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    idx     bigint := now_ms / p_window_ms;
    i       bigint;
    counted integer;
    slotted text[] := '{}';
    hit     text[] := '{}';
BEGIN
    window_left_ms := (idx + 1) * p_window_ms - now_ms;
    refused_at := 0;
    FOR i IN SELECT o FROM unnest(p_subjects) WITH ORDINALITY AS t(s, o) ORDER BY s LOOP
        IF p_caps[i] > 0 THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('kiro-limit-slots:' || p_subjects[i], 0));
            DELETE FROM limit_slots
            WHERE subject = p_subjects[i] AND expires_at < clock_timestamp();
            IF (SELECT count(*) FROM limit_slots WHERE subject = p_subjects[i]) >= p_caps[i] THEN
                refused_at := i;
                refused_kind := 'concurrency';
                EXIT;
            END IF;
            INSERT INTO limit_slots (lease, subject, expires_at)
            VALUES (p_leases[i], p_subjects[i],
                    clock_timestamp() + p_ttl_ms * interval '1 millisecond')
            ON CONFLICT (lease) DO NOTHING;
            slotted := slotted || p_leases[i];
        END IF;
        IF p_rpm[i] > 0 THEN
            counted := NULL;
            INSERT INTO limit_windows AS w (subject, window_index, hits)
            VALUES (p_subjects[i], idx, 1)
            ON CONFLICT (subject, window_index) DO UPDATE SET hits = w.hits + 1
            WHERE w.hits < p_rpm[i]
            RETURNING w.hits INTO counted;
            IF counted IS NULL THEN
                refused_at := i;
                refused_kind := 'rate';
                EXIT;
            END IF;
            hit := hit || p_subjects[i];
        END IF;
    END LOOP;
    IF refused_at > 0 THEN
        DELETE FROM limit_slots WHERE lease = ANY (slotted);
        UPDATE limit_windows SET hits = hits - 1
        WHERE window_index = idx AND subject = ANY (hit);
    END IF;
END $$;
