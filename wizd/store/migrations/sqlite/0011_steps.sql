-- wizd schema version 11 (SQLite): a job's durable history (ctx.step), kept across its runs.
--
-- One row per step a run finished or gave up on, in the order the processor called them
-- (position from 1). A later run of the job replays the completed rows instead of running
-- their bodies again. `kind` is 'step' today; durable sleeps and signal waits are meant to
-- be entries of the same history. Removed with its job.

CREATE TABLE job_steps (
    job_id      INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    occurrence  INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'step',
    status      TEXT    NOT NULL,
    result      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    started_at  REAL    NOT NULL,
    finished_at REAL    NOT NULL,
    PRIMARY KEY (job_id, name, occurrence)
) WITHOUT ROWID;
