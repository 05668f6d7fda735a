-- wizd schema version 4 (PostgreSQL): the events every job has are read from its row.
--
-- A job's history used to store three rows per job on the way every job goes: `enqueued`,
-- `claimed` and `completed`. The job row already holds them: created_at (a job enqueued
-- pending), and started_at, attempt and worker_id of its current run (claimed), and
-- finished_at of a completion. wizd.store.reads.events merges them into the stored events,
-- so `wizd logs` reads the same history, and the hot path writes no event rows at all.
--
-- What the row cannot hold is stored, as before: an enqueue into any other status or with
-- a message, and every other event. A run that ends any way but completed leaves the row
-- (the next claim overwrites started_at), so its `claimed` event is stored then, by this
-- row trigger, whatever ended it (the worker, the reaper, recovery, expiry, a shutdown).
-- Its WHEN clause is checked as each row is updated, so claims, completions and heartbeats
-- queue nothing.
--
-- Rows stored before this version stay: the reader derives no line of a job whose history
-- stores its completion (nor its enqueue, when that is stored). Only the stored claim of a
-- run still going is removed here, since its row now holds it; it is stored again, in the
-- same place, if the run ends any way but completed.

DELETE FROM job_events WHERE id IN (
    SELECT e.id FROM jobs j JOIN job_events e ON e.job_id = j.id
    WHERE j.status = 'running' AND e.kind = 'claimed' AND e.at = j.started_at
);

CREATE FUNCTION wizd_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, at, kind, status, attempt, worker_id, message)
    VALUES (OLD.id, OLD.started_at, 'claimed', 'running', OLD.attempt, OLD.worker_id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER job_events_run_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.status NOT IN ('running', 'completed'))
    EXECUTE FUNCTION wizd_run_ended();
