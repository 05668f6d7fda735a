-- wizd schema version 5 (SQLite): the two transitions every job makes, pending -> running
-- (its claim) and running -> completed (its completion), are counted by the statements that
-- make them, once per statement (sqlite_queries.COUNT_ADD, from wizd.store.rows.moved),
-- instead of three trigger statements per job. Every other change is counted as before.

DROP TRIGGER job_counts_update;

CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs
WHEN OLD.status IS NOT NEW.status
 AND NOT (OLD.status = 'pending' AND NEW.status = 'running')
 AND NOT (OLD.status = 'running' AND NEW.status = 'completed') BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
    INSERT OR IGNORE INTO job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 0);
    UPDATE job_counts SET n = n + 1 WHERE queue = NEW.queue AND status = NEW.status;
END;
