-- wizd schema version 3 (PostgreSQL): job_events without its foreign key to jobs.
--
-- The key made every event insert (two per job on the hot path: claimed and its outcome)
-- run a referential check that locks the job row FOR KEY SHARE, while the same transaction
-- or the next one updates that row: about a seventh of a claim+complete cycle. Nothing
-- relied on it: every path that deletes jobs (`wizd delete`, cleanup, retention) deletes
-- their events in the same transaction, and job ids come from a sequence (never reused).
-- At worst a `log` line racing the deletion of its finished job outlives it, unseen.
-- The index on job_events (job_id, id) stays: it serves a job's history and those deletes.

ALTER TABLE job_events DROP CONSTRAINT IF EXISTS job_events_job_id_fkey;
