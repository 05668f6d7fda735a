-- wizd schema version 9 (PostgreSQL): a job's durable history (ctx.step), kept across its
-- runs.
--
-- One row per step a run finished or gave up on, in the order the processor called them
-- (position from 1). A later run of the job replays the completed rows instead of running
-- their bodies again. `kind` is 'step' today; durable sleeps and signal waits are meant to
-- be entries of the same history. Removed with its job.

CREATE TABLE job_steps (
    job_id      BIGINT           NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name        TEXT             NOT NULL,
    occurrence  INTEGER          NOT NULL,
    position    INTEGER          NOT NULL,
    kind        TEXT             NOT NULL DEFAULT 'step',
    status      TEXT             NOT NULL,
    result      TEXT,
    error       TEXT,
    attempts    INTEGER          NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, name, occurrence)
);
