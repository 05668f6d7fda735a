-- wizd schema version 8 (SQLite): partial indexes whose conditions are plain comparisons.
--
-- SQLite evaluates `status IN ('completed', 'failed', 'cancelled')` (a list of three or more
-- constants) by building a temporary b-tree of the list, once per statement run. Two partial
-- indexes had such a list in their WHERE, so every INSERT, and every UPDATE of a job, built
-- two of them per row of an executemany and per statement. In a stdlib loop of 20,000 jobs,
-- the two rewritten indexes made the enqueue 9 % faster and a claim+complete 17 %.
--
-- jobs_finished: finished_at is set exactly when a job becomes final. Retention and the
-- queue stats compare finished_at, which implies `finished_at IS NOT NULL`, so they can now
-- use this index: retention scanned the whole table, since `status IN (?, ?, ?)` with bound
-- values never matched the old constant list.
-- jobs_expiring: the same rows as before, with the list written as three comparisons; the
-- expiry query (sqlite_queries.EXPIRED) spells them the same way, as SQLite needs to use it.

DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (status, finished_at) WHERE finished_at IS NOT NULL;

DROP INDEX jobs_expiring;
CREATE INDEX jobs_expiring ON jobs (expires_at)
    WHERE expires_at IS NOT NULL
      AND status <> 'completed' AND status <> 'failed' AND status <> 'cancelled';
