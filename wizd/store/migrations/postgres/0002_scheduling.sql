-- wizd schema version 2 (PostgreSQL): scheduling controls, as SQLite's schema 4. Unique
-- jobs, concurrency keys, per-queue limits with a token bucket kept in the store, and
-- recurring schedules. See migrations/sqlite/0004_scheduling.sql for what each column means.

ALTER TABLE jobs ADD COLUMN unique_key TEXT;
ALTER TABLE jobs ADD COLUMN unique_lock TEXT;
ALTER TABLE jobs ADD COLUMN unique_until DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN unique_states TEXT;
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;

CREATE UNIQUE INDEX jobs_unique_lock ON jobs (unique_lock) WHERE unique_lock IS NOT NULL;
CREATE INDEX jobs_concurrency ON jobs (concurrency_key, status) WHERE concurrency_key IS NOT NULL;

ALTER TABLE queues ADD COLUMN max_running INTEGER;
ALTER TABLE queues ADD COLUMN rate_count INTEGER;
ALTER TABLE queues ADD COLUMN rate_period DOUBLE PRECISION;
ALTER TABLE queues ADD COLUMN rate_burst INTEGER;
ALTER TABLE queues ADD COLUMN rate_tokens DOUBLE PRECISION;
ALTER TABLE queues ADD COLUMN rate_at DOUBLE PRECISION;
ALTER TABLE queues ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0;

CREATE TABLE concurrency_limits (
    key         TEXT    PRIMARY KEY,
    max_running INTEGER NOT NULL
);

CREATE TABLE schedules (
    id         BIGSERIAL PRIMARY KEY,
    key        TEXT             UNIQUE,
    queue      TEXT             NOT NULL,
    name       TEXT             NOT NULL,
    payload    TEXT             NOT NULL,
    options    TEXT             NOT NULL DEFAULT '{}',
    cron       TEXT,
    every      DOUBLE PRECISION,
    timezone   TEXT             NOT NULL DEFAULT 'UTC',
    catch_up   TEXT             NOT NULL DEFAULT 'latest',
    paused     INTEGER          NOT NULL DEFAULT 0,
    next_at    DOUBLE PRECISION NOT NULL,
    last_at    DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE paused = 0;

CREATE TABLE schedule_runs (
    schedule_id BIGINT           NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    fire_at     DOUBLE PRECISION NOT NULL,
    job_id      BIGINT,
    fired_at    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_runs_fired ON schedule_runs (fired_at);
