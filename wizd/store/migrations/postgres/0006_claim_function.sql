-- wizd schema version 6 (PostgreSQL): a claim is one statement, one round trip.
--
-- A claim used to be five round trips from the daemon: BEGIN, the queue's row, the
-- promotion of its due delayed jobs, the claim, COMMIT. On loopback each costs 0.13-0.15 ms,
-- which made a claim of one job 1.3-1.6 ms and most of a job's pickup latency. wizd_claim
-- runs the same three statements inside the server; a claim that runs alone is this one
-- call in autocommit (wizd.store.postgres), one that shares a group commit with completions
-- saves two statements of that transaction.
--
-- It claims for a queue without limits only (the common case, and the one that matters for
-- latency). For a queue with a concurrency limit, a rate or concurrency keys it claims
-- nothing and returns one row whose job is NULL: the caller then claims in a transaction
-- of its own under wizd.store.limits, as before. A paused queue returns no row, as before.
-- Its returned job is the jobs row type, so that a column added to jobs later reaches the
-- caller (which names the columns it reads) without recreating this function.

CREATE FUNCTION wizd_claim(p_queue TEXT, p_worker TEXT, p_now DOUBLE PRECISION, p_n INTEGER)
RETURNS TABLE (job jobs, deps BIGINT[]) LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    q queues%ROWTYPE;
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
END $$;
