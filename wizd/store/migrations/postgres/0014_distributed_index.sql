-- wizd schema version 14 (PostgreSQL): distributed jobs by creation, for listing them
-- (Queue.list(kind="distributed"), the console's Distributed jobs page).
--
-- They are few among many plain jobs, so a list of them walked jobs_created and skipped
-- nearly every row: 300 ms a page with 1,000,000 jobs (bench/console.py). This partial
-- index holds them alone; the list spells out its condition (wizd.store.listing), as
-- SQLite and PostgreSQL need to use a partial index.

CREATE INDEX jobs_distributed ON jobs (created_at, id) WHERE kind = 'distributed';
