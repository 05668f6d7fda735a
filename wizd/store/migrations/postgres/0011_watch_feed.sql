-- wizd schema version 11 (PostgreSQL): the change feed that Queue.watch reads
-- (wizd.store.feed); see the SQLite migration 0013 for what it holds and why.
--
-- Order: ids come from an identity, and concurrent transactions could commit out of id
-- order, so a watcher reading "id > cursor" could pass over an id committed later. The
-- feed triggers are therefore deferred to COMMIT and take a transaction-level advisory
-- lock before they take ids: feeding transactions commit one at a time in id order. At
-- commit every row lock a transaction needs is held already, so the lock cannot deadlock
-- with them. They also NOTIFY "wizd_<schema>:feed" (once per transaction) for the
-- watchers. Nobody watching: each trigger finds feed_watchers empty and returns.

CREATE TABLE job_feed (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    BIGINT           NOT NULL,
    queue     TEXT             NOT NULL,
    at        DOUBLE PRECISION NOT NULL,
    kind      TEXT             NOT NULL,
    status    TEXT,
    attempt   INTEGER,
    worker_id TEXT,
    message   TEXT
);

CREATE TABLE feed_watchers (
    id         TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE job_streams (
    job_id  BIGINT  PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    text    TEXT    NOT NULL,
    piece   TEXT    NOT NULL,
    dropped BIGINT  NOT NULL DEFAULT 0
);

-- Whether the transaction feeds: the first feeding row of a transaction looks for a lease,
-- takes the lock and notifies; the others find the transaction-local mark it left.
CREATE FUNCTION wizd_feed_lock() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('wizd.feeding', true) = 'on' THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM feed_watchers) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.job_feed'));
    PERFORM pg_notify('wizd_' || current_schema() || ':feed', '');
    PERFORM set_config('wizd.feeding', 'on', true);
    RETURN true;
END $$;

CREATE FUNCTION wizd_feed_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT wizd_feed_lock() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
        VALUES (NEW.id, NEW.queue, NEW.created_at, 'enqueued', 'pending', 0, NULL, NULL);
        IF NEW.status = 'running' THEN  -- handed over to an idle daemon (schema 7)
            INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
            VALUES (NEW.id, NEW.queue, NEW.started_at, 'claimed', 'running', NEW.attempt,
                    NEW.worker_id, NULL);
        END IF;
    ELSE
        INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
        VALUES (
            NEW.id, NEW.queue,
            CASE NEW.status WHEN 'running' THEN NEW.started_at ELSE NEW.finished_at END,
            CASE NEW.status WHEN 'running' THEN 'claimed' ELSE 'completed' END,
            NEW.status, NEW.attempt, NEW.worker_id, NULL
        );
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION wizd_feed_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT wizd_feed_lock() THEN
        RETURN NULL;
    END IF;
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    SELECT NEW.job_id, j.queue, NEW.at, NEW.kind, NEW.status, NEW.attempt, NEW.worker_id,
           NEW.message
    FROM jobs j WHERE j.id = NEW.job_id;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER job_feed_enqueued AFTER INSERT ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'running') AND NEW.error IS NULL)
    EXECUTE FUNCTION wizd_feed_job();

CREATE CONSTRAINT TRIGGER job_feed_status AFTER UPDATE OF status ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.status IN ('running', 'completed') AND OLD.status <> NEW.status)
    EXECUTE FUNCTION wizd_feed_job();

CREATE CONSTRAINT TRIGGER job_feed_event AFTER INSERT ON job_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.kind <> 'claimed')
    EXECUTE FUNCTION wizd_feed_event();

-- A streamed piece (ctx.stream, coalesced by the writer) goes to the feed as it is stored.
CREATE FUNCTION wizd_feed_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT wizd_feed_lock() THEN
        RETURN NULL;
    END IF;
    INSERT INTO job_feed (job_id, queue, at, kind, status, attempt, worker_id, message)
    SELECT NEW.job_id, j.queue, extract(epoch FROM clock_timestamp()), 'stream', NULL,
           j.attempt, j.worker_id, NEW.piece
    FROM jobs j WHERE j.id = NEW.job_id;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER job_feed_stream AFTER INSERT OR UPDATE OF piece ON job_streams
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION wizd_feed_stream();
