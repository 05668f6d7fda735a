-- wizd schema version 13 (SQLite): the change feed that Queue.watch reads (wizd.store.feed).
--
-- A job that goes the usual way writes no event rows (schema 6): its enqueue, claim and
-- completion live in its row. A watcher needs them in one global order, so while anybody
-- watches (a live row in feed_watchers) these triggers copy every line of every job's
-- history into job_feed, whose id is the commit order (SQLite has one writer at a time)
-- and the watchers' cursor. Nobody watching: each trigger's WHEN finds feed_watchers empty
-- and writes nothing. Rows older than a watcher's lease are pruned by the watchers.
--
-- job_streams holds the capped tail of what a job streamed (ctx.stream).

CREATE TABLE job_feed (
    id        INTEGER PRIMARY KEY,  -- never reused: pruning keeps the last row
    job_id    INTEGER NOT NULL,
    queue     TEXT    NOT NULL,
    at        REAL    NOT NULL,
    kind      TEXT    NOT NULL,
    status    TEXT,
    attempt   INTEGER,
    worker_id TEXT,
    message   TEXT
);

CREATE TABLE feed_watchers (
    id         TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE job_streams (
    job_id  INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    text    TEXT    NOT NULL,
    piece   TEXT    NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);

CREATE TRIGGER job_feed_enqueued AFTER INSERT ON jobs
WHEN NEW.status = 'pending' AND NEW.error IS NULL AND EXISTS (SELECT 1 FROM feed_watchers)
BEGIN
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    VALUES (NEW.id, NEW.queue, NEW.created_at, 'enqueued', 'pending', 0, NULL, NULL);
END;

CREATE TRIGGER job_feed_status AFTER UPDATE OF status ON jobs
WHEN NEW.status IN ('running', 'completed') AND OLD.status != NEW.status
    AND EXISTS (SELECT 1 FROM feed_watchers)
BEGIN
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    VALUES (
        NEW.id, NEW.queue,
        CASE NEW.status WHEN 'running' THEN NEW.started_at ELSE NEW.finished_at END,
        CASE NEW.status WHEN 'running' THEN 'claimed' ELSE 'completed' END,
        NEW.status, NEW.attempt, NEW.worker_id, NULL
    );
END;

-- Every stored event but the claim a run's end stores (job_events_run_ended): the feed
-- had that claim when it happened.
CREATE TRIGGER job_feed_event AFTER INSERT ON job_events
WHEN NEW.kind != 'claimed' AND EXISTS (SELECT 1 FROM feed_watchers)
BEGIN
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    SELECT NEW.job_id, j.queue, NEW.at, NEW.kind, NEW.status, NEW.attempt, NEW.worker_id,
           NEW.message
    FROM jobs j WHERE j.id = NEW.job_id;
END;

-- A streamed piece (ctx.stream, coalesced by the writer) goes to the feed as it is stored.
CREATE TRIGGER job_feed_stream_new AFTER INSERT ON job_streams
WHEN EXISTS (SELECT 1 FROM feed_watchers)
BEGIN
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    SELECT NEW.job_id, j.queue, (julianday('now') - 2440587.5) * 86400.0, 'stream', NULL, j.attempt, j.worker_id,
           NEW.piece
    FROM jobs j WHERE j.id = NEW.job_id;
END;

CREATE TRIGGER job_feed_stream AFTER UPDATE OF piece ON job_streams
WHEN EXISTS (SELECT 1 FROM feed_watchers)
BEGIN
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    SELECT NEW.job_id, j.queue, (julianday('now') - 2440587.5) * 86400.0, 'stream', NULL, j.attempt, j.worker_id,
           NEW.piece
    FROM jobs j WHERE j.id = NEW.job_id;
END;
