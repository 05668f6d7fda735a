-- wizd schema version 7 (PostgreSQL): a job enqueued alone is handed to an idle daemon.
--
-- An idle daemon woken by NOTIFY claims the new job: a round trip whose commit waits for
-- a WAL flush, 0.5-0.9 ms of a pickup of about 1 ms here, and with several daemons every
-- one of them wakes and claims, and all but one find nothing. Instead, a daemon whose claim
-- left it with free slots and an empty queue offers a few of them in free_slots, one row
-- per slot, naming the key of its listening session. The insert of one plain job enqueued
-- alone (wizd.store.postgres, INSERT_JOB_IF_DEFAULTS, which sets wizd.hand_over for its
-- transaction) takes one such row, if there is one, in the trigger wizd_hand_over, and is
-- made already claimed for that daemon (running, attempt 1): the job is claimed when the
-- enqueue commits. The trigger notifies that daemon alone, on the channel of its key,
-- with the job's row, so that the daemon starts the job without a round trip; the other
-- idle daemons are not woken (the insert's own notification is for pending jobs only).
--
-- A row is one slot, taken (deleted) by the hand-over that fills it; only the daemon's
-- next claim offers slots again, and it adds rows rather than changing them, so that an
-- enqueue never waits for (nor skips) a slot that the daemon's claim is writing. A daemon
-- offers at most p_slots of wizd_claim: one whose host vanished (a power loss, a
-- partition: its session lingers on the server until its keepalives fail) strands at
-- most that many jobs per queue, which the reaper recovers as it recovers a claim whose
-- answer was lost. A row only counts while the daemon's listening session holds its
-- advisory lock (key pair: hashtext of 'wizd.listener.' || schema, the row's listener): a
-- session that ended has let go of it, and the hand-over skips its rows (the upkeep
-- deletes them).

CREATE TABLE free_slots (
    id        BIGSERIAL PRIMARY KEY,
    queue     TEXT    NOT NULL,
    worker_id TEXT    NOT NULL,
    listener  INTEGER NOT NULL
);
CREATE INDEX free_slots_queue ON free_slots (queue, worker_id);

-- The key of each listening session: its advisory lock's and its channel's
-- ('wizd_' || schema || ':' || key).
CREATE SEQUENCE listener_keys AS INTEGER CYCLE;

-- wizd_claim of schema 6 (four arguments) stays, for a daemon of an older wizd left
-- running through an upgrade: it claims as it did and is never handed a job.

-- As in schema 6, and: a claim that took fewer than p_n jobs (free slots are left and
-- the queue has no pending job left for them) offers up to p_slots of them to hand-overs,
-- under its listening session's key p_listener; one that took p_n, or a daemon without a
-- listener (p_listener NULL), withdraws its offer. Each writes only when the offer
-- changes, so an idle daemon's claims every poll interval write nothing.
CREATE FUNCTION wizd_claim(
    p_queue TEXT, p_worker TEXT, p_now DOUBLE PRECISION, p_n INTEGER, p_listener INTEGER,
    p_slots INTEGER
)
RETURNS TABLE (job jobs, deps BIGINT[]) LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    q queues%ROWTYPE;
    claimed INTEGER;
    offer INTEGER;
    have INTEGER;
    stale INTEGER;
BEGIN
    SELECT * INTO q FROM queues WHERE name = p_queue;
    IF FOUND AND q.paused <> 0 THEN
        RETURN;
    END IF;
    -- Rows another daemon is promoting or claiming right now are skipped, not waited for.
    -- The look first (one probe of jobs_delayed) spares a claim with nothing due the
    -- UPDATE and its statement triggers.
    IF EXISTS (SELECT 1 FROM jobs j WHERE j.status = 'delayed' AND j.queue = p_queue
               AND j.run_at <= p_now) THEN
        WITH promoted AS (
            UPDATE jobs SET status = 'pending', updated_at = p_now
            WHERE id IN (SELECT j.id FROM jobs j WHERE j.status = 'delayed'
                         AND j.queue = p_queue AND j.run_at <= p_now FOR UPDATE SKIP LOCKED)
            RETURNING id, attempt
        )
        INSERT INTO job_events (job_id, at, kind, status, attempt, worker_id, message)
        SELECT id, p_now, 'promoted', 'pending', attempt, NULL, NULL FROM promoted;
    END IF;
    IF q.name IS NOT NULL
       AND (q.max_running IS NOT NULL OR q.rate_count IS NOT NULL OR q.keyed <> 0) THEN
        RETURN NEXT;  -- job and deps NULL: the caller applies the limits
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE jobs
    SET status = 'running', attempt = attempt + 1, worker_id = p_worker, heartbeat_at = p_now,
        started_at = p_now, updated_at = p_now, error = NULL, progress = NULL,
        progress_message = NULL
    WHERE id IN (
        SELECT j.id FROM jobs j
        WHERE j.queue = p_queue AND j.status = 'pending'
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_n
        FOR UPDATE SKIP LOCKED
    )
    RETURNING jobs,
        ARRAY(SELECT d.depends_on FROM job_deps d WHERE d.job_id = jobs.id ORDER BY d.depends_on);
    GET DIAGNOSTICS claimed = ROW_COUNT;
    offer := CASE WHEN p_listener IS NULL THEN 0 ELSE LEAST(p_n - claimed, p_slots) END;
    SELECT count(*) FILTER (WHERE f.listener = p_listener),
           count(*) FILTER (WHERE f.listener IS DISTINCT FROM p_listener)
    INTO have, stale
    FROM free_slots f WHERE f.queue = p_queue AND f.worker_id = p_worker;
    IF stale > 0 THEN  -- offered by an earlier listening session of the daemon
        DELETE FROM free_slots f WHERE f.queue = p_queue AND f.worker_id = p_worker
        AND f.listener IS DISTINCT FROM p_listener;
    END IF;
    IF have < offer THEN
        INSERT INTO free_slots (queue, worker_id, listener)
        SELECT p_queue, p_worker, p_listener FROM generate_series(1, offer - have);
    ELSIF have > offer THEN  -- slots an enqueue is filling right now are left to it
        DELETE FROM free_slots WHERE id IN (
            SELECT f.id FROM free_slots f
            WHERE f.queue = p_queue AND f.worker_id = p_worker AND f.listener = p_listener
            LIMIT have - offer FOR UPDATE SKIP LOCKED);
    END IF;
END $$;

-- Only the insert of a job enqueued alone asks for a hand-over (wizd.hand_over, local to
-- its transaction), and only when the queue has free slots offered, so that a job whose
-- dependencies or children are inserted after it is never handed over, and any other
-- insert costs one setting lookup per row. The job goes
-- to a live daemon's offered slot if it is the job any claim of its queue would take
-- next: no other job pending, no delayed job due before it, the queue unpaused and
-- without limits. A row whose JSON would not fit in a notification stays pending.
CREATE FUNCTION wizd_hand_over() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    slot free_slots%ROWTYPE;
    claimed jobs%ROWTYPE;
    handed TEXT;
BEGIN
    SELECT * INTO slot FROM free_slots f
    WHERE f.queue = NEW.queue
      AND NOT pg_try_advisory_xact_lock_shared(
          hashtext('wizd.listener.' || TG_TABLE_SCHEMA), f.listener)
    LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND
       OR EXISTS (SELECT 1 FROM queues q WHERE q.name = NEW.queue AND (q.paused <> 0
                  OR q.max_running IS NOT NULL OR q.rate_count IS NOT NULL OR q.keyed <> 0))
       OR EXISTS (SELECT 1 FROM jobs j WHERE j.queue = NEW.queue AND j.status = 'pending')
       OR EXISTS (SELECT 1 FROM jobs j WHERE j.queue = NEW.queue AND j.status = 'delayed'
                  AND j.run_at <= NEW.run_at) THEN
        RETURN NEW;
    END IF;
    claimed := NEW;
    claimed.status := 'running';
    claimed.attempt := NEW.attempt + 1;
    claimed.worker_id := slot.worker_id;
    claimed.heartbeat_at := NEW.created_at;
    claimed.started_at := NEW.created_at;
    handed := row_to_json(claimed)::text;
    IF octet_length(handed) >= 7900 THEN  -- a notification's payload is under 8000 bytes
        RETURN NEW;
    END IF;
    DELETE FROM free_slots WHERE id = slot.id;
    PERFORM pg_notify('wizd_' || TG_TABLE_SCHEMA || ':' || slot.listener, handed);
    RETURN claimed;
END $$;

CREATE TRIGGER jobs_hand_over BEFORE INSERT ON jobs FOR EACH ROW
    WHEN (NEW.status = 'pending' AND current_setting('wizd.hand_over', true) = '1')
    EXECUTE FUNCTION wizd_hand_over();
