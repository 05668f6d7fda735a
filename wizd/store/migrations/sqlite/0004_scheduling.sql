-- wizd schema version 4 (SQLite): scheduling controls. Unique jobs, concurrency keys,
-- per-queue limits with a token bucket kept in the store, and recurring schedules.

-- Unique jobs. unique_key stays on the job for everyone to see; unique_lock holds the same
-- key while the job keeps it (its states or its period), and the unique index on it is
-- what refuses a second holder, whichever process tries. A holder that no longer keeps
-- its key (its status is not in unique_states and unique_until has passed) is released
-- by the next enqueue of that key, so finishing a job writes nothing extra.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
ALTER TABLE jobs ADD COLUMN unique_lock TEXT;
ALTER TABLE jobs ADD COLUMN unique_until REAL;
-- The statuses that keep the key, as ',pending,running,' (matched with LIKE).
ALTER TABLE jobs ADD COLUMN unique_states TEXT;
-- Jobs sharing a concurrency key share its limit (concurrency_limits), across queues.
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;

CREATE UNIQUE INDEX jobs_unique_lock ON jobs (unique_lock) WHERE unique_lock IS NOT NULL;
-- How many jobs of a key run now: an index range, not a scan.
CREATE INDEX jobs_concurrency ON jobs (concurrency_key, status) WHERE concurrency_key IS NOT NULL;

-- Per-queue limits (NULL: none). The rate is rate_count jobs per rate_period seconds, a
-- token bucket of rate_burst tokens whose level (rate_tokens, as of rate_at) is kept here
-- so that every daemon draws from the same bucket. keyed: a job with a concurrency key was
-- ever enqueued here, so claims must look at concurrency_limits.
ALTER TABLE queues ADD COLUMN max_running INTEGER;
ALTER TABLE queues ADD COLUMN rate_count INTEGER;
ALTER TABLE queues ADD COLUMN rate_period REAL;
ALTER TABLE queues ADD COLUMN rate_burst INTEGER;
ALTER TABLE queues ADD COLUMN rate_tokens REAL;
ALTER TABLE queues ADD COLUMN rate_at REAL;
ALTER TABLE queues ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0;

CREATE TABLE concurrency_limits (
    key         TEXT    PRIMARY KEY,
    max_running INTEGER NOT NULL
) WITHOUT ROWID;

-- Recurring jobs: a cron expression in a time zone, or a fixed interval in seconds.
-- next_at is the next occurrence not yet enqueued; options are the job's options as JSON.
CREATE TABLE schedules (
    id         INTEGER PRIMARY KEY,
    key        TEXT    UNIQUE,
    queue      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    options    TEXT    NOT NULL DEFAULT '{}',
    cron       TEXT,
    every      REAL,
    timezone   TEXT    NOT NULL DEFAULT 'UTC',
    catch_up   TEXT    NOT NULL DEFAULT 'latest',
    paused     INTEGER NOT NULL DEFAULT 0,
    next_at    REAL    NOT NULL,
    last_at    REAL,
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE paused = 0;

-- One row per occurrence enqueued: the primary key (schedule, fire time) is what makes
-- each occurrence enqueued once, however many daemons fire schedules at the same moment.
-- job_id is informational (no foreign key: deleting jobs must not scan this table).
CREATE TABLE schedule_runs (
    schedule_id INTEGER NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    fire_at     REAL    NOT NULL,
    job_id      INTEGER,
    fired_at    REAL    NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
) WITHOUT ROWID;
CREATE INDEX schedule_runs_fired ON schedule_runs (fired_at);
