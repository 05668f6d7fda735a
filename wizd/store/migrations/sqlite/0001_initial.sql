-- wizd schema version 1 (SQLite). Timestamps are UTC seconds since the epoch (REAL).

CREATE TABLE jobs (
    id                    INTEGER PRIMARY KEY,
    queue                 TEXT    NOT NULL,
    name                  TEXT    NOT NULL,
    payload               TEXT    NOT NULL,
    status                TEXT    NOT NULL,
    priority              INTEGER NOT NULL DEFAULT 3,
    attempt               INTEGER NOT NULL DEFAULT 0,
    max_attempts          INTEGER NOT NULL DEFAULT 3,
    backoff               TEXT    NOT NULL,
    timeout               REAL,
    run_at                REAL    NOT NULL,
    expires_at            REAL,
    parent_id             INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    batch_id              TEXT,
    tags                  TEXT    NOT NULL DEFAULT '[]',
    context               TEXT,
    result                TEXT,
    error                 TEXT,
    progress              REAL,
    progress_message      TEXT,
    worker_id             TEXT,
    heartbeat_at          REAL,
    on_dependency_failure TEXT    NOT NULL DEFAULT 'fail',
    on_child_failure      TEXT    NOT NULL DEFAULT 'continue',
    created_at            REAL    NOT NULL,
    updated_at            REAL    NOT NULL,
    started_at            REAL,
    finished_at           REAL
);

-- The hot path: claim order within a queue, pending jobs only.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE status = 'pending';
-- Promotion of due delayed jobs, without touching the claim index.
CREATE INDEX jobs_delayed ON jobs (queue, run_at) WHERE status = 'delayed';
-- Heartbeats and the reaper.
CREATE INDEX jobs_running ON jobs (worker_id, heartbeat_at) WHERE status = 'running';
CREATE INDEX jobs_expiring ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_queue_status ON jobs (queue, status, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_finished ON jobs (status, finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;

CREATE TABLE job_deps (
    job_id     INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    depends_on INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX job_deps_reverse ON job_deps (depends_on, job_id);

CREATE TABLE job_events (
    id        INTEGER PRIMARY KEY,
    job_id    INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at        REAL    NOT NULL,
    kind      TEXT    NOT NULL,
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
) WITHOUT ROWID;

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    concurrency  INTEGER NOT NULL,
    version      TEXT    NOT NULL,
    started_at   REAL    NOT NULL,
    heartbeat_at REAL    NOT NULL,
    stopped_at   REAL,
    busy         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Per-status counts kept current in the same transaction as every change, so that a
-- metrics scrape reads a handful of rows instead of scanning jobs.
CREATE TABLE job_counts (
    queue  TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, status)
) WITHOUT ROWID;

CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT OR IGNORE INTO job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 0);
    UPDATE job_counts SET n = n + 1 WHERE queue = NEW.queue AND status = NEW.status;
END;

CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs
WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
    INSERT OR IGNORE INTO job_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 0);
    UPDATE job_counts SET n = n + 1 WHERE queue = NEW.queue AND status = NEW.status;
END;

CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status;
END;
