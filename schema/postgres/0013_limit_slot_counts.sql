-- Slots of a subject were counted with count(*) over limit_slots, and every released slot
-- leaves a dead row there until autovacuum (at most once a minute) removes it. On one busy key
-- each count visited tens of thousands of dead rows: admissions slowed from 0.6 ms to 2.4 ms
-- within 40 s of pgbench. The count now lives in one row per subject, updated in place (a HOT
-- update, pruned within its page). limit_slots keeps the leases, so the slots of a process that
-- stopped renewing them (crashed) are still found by their expiry: when a subject is full, its
-- expired leases are given back and the take is tried once more.
CREATE UNLOGGED TABLE limit_slot_counts (
    subject text    PRIMARY KEY,
    taken   integer NOT NULL
);
INSERT INTO limit_slot_counts (subject, taken)
SELECT subject, count(*) FROM limit_slots GROUP BY subject;

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

CREATE OR REPLACE FUNCTION kiro_limit_acquire(p_subject text, p_cap integer, p_lease text,
                                              p_ttl_ms bigint)
RETURNS boolean
LANGUAGE sql AS $$ SELECT kiro_limit_take(p_subject, p_cap, p_lease, p_ttl_ms) $$;

-- As in 0009, with the slots taken by kiro_limit_take and given back by kiro_limit_release.
CREATE OR REPLACE FUNCTION kiro_limit_admit(p_subjects text[], p_rpm integer[],
                                            p_caps integer[], p_leases text[],
                                            p_window_ms bigint, p_ttl_ms bigint,
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
