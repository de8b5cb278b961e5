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

-- limit_slot_counts: the slots taken per subject, updated in place (a HOT update, pruned within
-- its page). Counting limit_slots instead would visit every released slot's dead row until
-- autovacuum (at most once a minute) removes it: on one busy key that slowed admissions from
-- 0.6 ms to 2.4 ms within 40 s of pgbench. The lease rows still find the slots of a process that
-- stopped renewing them (crashed): when a subject is full, its expired leases are given back
-- and the take is tried once more.
CREATE UNLOGGED TABLE limit_slot_counts (
    subject text    PRIMARY KEY,
    taken   integer NOT NULL
);

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

-- Takes one of `p_cap` slots of `p_subject` for `p_lease` (true), or none when all are taken
-- (false). Takers of one subject queue on its count row, which the upsert locks even when its
-- condition refuses the update. A lease already held is kept.
CREATE FUNCTION kiro_limit_take(p_subject text, p_cap integer, p_lease text, p_ttl_ms bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    counted integer;
    expired integer;
BEGIN
    IF EXISTS (SELECT 1 FROM limit_slots WHERE lease = p_lease) THEN
        RETURN true;
    END IF;
    FOR attempt IN 1..2 LOOP
        counted := NULL;
        INSERT INTO limit_slot_counts AS c (subject, taken) VALUES (p_subject, 1)
        ON CONFLICT (subject) DO UPDATE SET taken = c.taken + 1 WHERE c.taken < p_cap
        RETURNING c.taken INTO counted;
        IF counted IS NOT NULL THEN
            INSERT INTO limit_slots (lease, subject, expires_at)
            VALUES (p_lease, p_subject, clock_timestamp() + p_ttl_ms * interval '1 millisecond');
            RETURN true;
        END IF;
        EXIT WHEN attempt = 2;
        DELETE FROM limit_slots WHERE subject = p_subject AND expires_at < clock_timestamp();
        GET DIAGNOSTICS expired = ROW_COUNT;
        EXIT WHEN expired = 0;
        UPDATE limit_slot_counts SET taken = greatest(taken - expired, 0)
        WHERE subject = p_subject;
    END LOOP;
    RETURN false;
END $$;

-- Gives the slots of `p_leases` back; returns how many were held. Count rows are updated in
-- text order of their subjects, as kiro_limit_admit locks them, so the two cannot deadlock.
CREATE FUNCTION kiro_limit_release(p_leases text[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    subjects text[];
    i        integer;
BEGIN
    WITH gone AS (DELETE FROM limit_slots WHERE lease = ANY (p_leases) RETURNING subject)
    SELECT array_agg(subject ORDER BY subject) INTO subjects FROM gone;
    FOR i IN 1 .. coalesce(array_length(subjects, 1), 0) LOOP
        UPDATE limit_slot_counts SET taken = greatest(taken - 1, 0)
        WHERE subject = subjects[i];
    END LOOP;
    RETURN coalesce(array_length(subjects, 1), 0);
END $$;

-- Admits one request: takes, for every subject i of the request, a slot of `p_caps[i]`
-- (lease `p_leases[i]`) and a hit of the window of `p_rpm[i]` (0 = no such limit), all or
-- nothing, in one round trip. Subjects are visited in text order, each one's slot count row
-- first, then its window row, so two requests sharing subjects always lock them in the same
-- order (no deadlock). On the first refusal what was taken is undone in
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
            IF NOT kiro_limit_take(p_subjects[i], p_caps[i], p_leases[i], p_ttl_ms) THEN
                refused_at := i;
                refused_kind := 'concurrency';
                EXIT;
            END IF;
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
        PERFORM kiro_limit_release(slotted);
        UPDATE limit_windows SET hits = hits - 1
        WHERE window_index = idx AND subject = ANY (hit);
    END IF;
END $$;
