-- wizd schema version 5 (PostgreSQL): the index of jobs by queue and status leaves out the
-- statuses every job passes through (pending, running, completed), as SQLite's schema 9.
--
-- jobs_queue_status (queue, status, created_at) had an entry for every job, so every claim
-- and every completion wrote it twice (a status change is never a HOT update here: status
-- is in the partial indexes' conditions). Listing a status other than those three still
-- reads it; pending, running and delayed jobs have their own partial indexes; a queue's jobs
-- by creation (all of them, or its completed ones) read jobs_queue_created.

DROP INDEX jobs_queue_status;
CREATE INDEX jobs_queue_status ON jobs (queue, status, created_at)
    WHERE status <> 'pending' AND status <> 'running' AND status <> 'completed';
CREATE INDEX jobs_queue_created ON jobs (queue, created_at);
