-- wizd schema version 1 (PostgreSQL): the same tables as SQLite's schema 3, in the schema
-- named by the `postgres_schema` setting. Timestamps are UTC seconds since the epoch
-- (double precision), as on SQLite, so that both stores share their transaction code.

CREATE TABLE jobs (
    id                    BIGSERIAL PRIMARY KEY,
    queue                 TEXT             NOT NULL,
    name                  TEXT             NOT NULL,
    payload               TEXT             NOT NULL,
    status                TEXT             NOT NULL,
    priority              INTEGER          NOT NULL DEFAULT 3,
    attempt               INTEGER          NOT NULL DEFAULT 0,
    max_attempts          INTEGER          NOT NULL DEFAULT 3,
    backoff               TEXT             NOT NULL,
    timeout               DOUBLE PRECISION,
    run_at                DOUBLE PRECISION NOT NULL,
    expires_at            DOUBLE PRECISION,
    parent_id             BIGINT REFERENCES jobs(id) ON DELETE SET NULL,
    batch_id              TEXT,
    tags                  TEXT             NOT NULL DEFAULT '[]',
    context               TEXT,
    result                TEXT,
    error                 TEXT,
    progress              DOUBLE PRECISION,
    progress_message      TEXT,
    worker_id             TEXT,
    heartbeat_at          DOUBLE PRECISION,
    on_dependency_failure TEXT             NOT NULL DEFAULT 'fail',
    on_child_failure      TEXT             NOT NULL DEFAULT 'continue',
    created_at            DOUBLE PRECISION NOT NULL,
    updated_at            DOUBLE PRECISION NOT NULL,
    started_at            DOUBLE PRECISION,
    finished_at           DOUBLE PRECISION,
    kind                  TEXT             NOT NULL DEFAULT 'job'
);

-- The hot path: claim order within a queue, pending jobs only.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE status = 'pending';
CREATE INDEX jobs_delayed ON jobs (queue, run_at) WHERE status = 'delayed';
CREATE INDEX jobs_running ON jobs (worker_id, heartbeat_at) WHERE status = 'running';
CREATE INDEX jobs_expiring ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_queue_status ON jobs (queue, status, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_parent ON jobs (parent_id, status) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE job_deps (
    job_id     BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    depends_on BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX job_deps_reverse ON job_deps (depends_on, job_id);

CREATE TABLE job_events (
    id        BIGSERIAL PRIMARY KEY,
    job_id    BIGINT           NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at        DOUBLE PRECISION NOT NULL,
    kind      TEXT             NOT NULL,
    status    TEXT,
    attempt   INTEGER,
    worker_id TEXT,
    message   TEXT
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE TABLE queues (
    name     TEXT PRIMARY KEY,
    paused   INTEGER NOT NULL DEFAULT 0,
    defaults TEXT    NOT NULL DEFAULT '{}'
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT             NOT NULL,
    pid          INTEGER          NOT NULL,
    queues       TEXT             NOT NULL,
    concurrency  INTEGER          NOT NULL,
    version      TEXT             NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    stopped_at   DOUBLE PRECISION,
    busy         INTEGER          NOT NULL DEFAULT 0
);

-- Per-status counts. Many daemons change statuses at once, so a change does not update a
-- shared counter row (every transaction would queue on that row's lock, and two that take
-- counter rows in different orders would deadlock): each statement appends its net change
-- per (queue, status) to job_count_deltas, and the store folds the deltas into job_counts
-- now and then, under an advisory lock. A count is job_counts plus the pending deltas.
CREATE TABLE job_counts (
    queue  TEXT   NOT NULL,
    status TEXT   NOT NULL,
    n      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, status)
);

CREATE TABLE job_count_deltas (
    queue  TEXT   NOT NULL,
    status TEXT   NOT NULL,
    n      BIGINT NOT NULL
);

-- Statement-level triggers with transition tables: one delta row per (queue, status) that
-- a statement changed, and one notification per queue that gained pending jobs (payload:
-- the queue's name; PostgreSQL folds identical notifications of a transaction into one).
CREATE FUNCTION wizd_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN  -- a statement that changed no row
        RETURN NULL;
    END IF;
    INSERT INTO job_count_deltas (queue, status, n)
    SELECT queue, status, COUNT(*) FROM new_rows GROUP BY queue, status;
    PERFORM pg_notify('wizd_' || TG_TABLE_SCHEMA, q)
    FROM (SELECT DISTINCT queue AS q FROM new_rows WHERE status = 'pending') p;
    RETURN NULL;
END $$;

CREATE FUNCTION wizd_jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN  -- e.g. a promotion that found nothing due
        RETURN NULL;
    END IF;
    INSERT INTO job_count_deltas (queue, status, n)
    SELECT queue, status, SUM(n) FROM (
        SELECT queue, status, 1 AS n FROM new_rows
        UNION ALL
        SELECT queue, status, -1 AS n FROM old_rows
    ) d GROUP BY queue, status HAVING SUM(n) <> 0;
    PERFORM pg_notify('wizd_' || TG_TABLE_SCHEMA, q)
    FROM (SELECT DISTINCT n.queue AS q FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.status = 'pending' AND o.status <> 'pending') p;
    RETURN NULL;
END $$;

CREATE FUNCTION wizd_jobs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
    INSERT INTO job_count_deltas (queue, status, n)
    SELECT queue, status, -COUNT(*) FROM old_rows GROUP BY queue, status;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wizd_jobs_inserted();
CREATE TRIGGER jobs_updated AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wizd_jobs_updated();
CREATE TRIGGER jobs_deleted AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wizd_jobs_deleted();
