-- wizd schema version 12 (SQLite): durable sleeps and signals (ctx.sleep, ctx.wait_for_signal).
--
-- A job whose run waits for a signal is `waiting_signal` (no slot held); its wait is the
-- entry of its history (job_steps, kind 'signal') with status 'waiting', and `wake_at` the
-- time its timeout makes the job pending again (NULL: no timeout). Signals sent to a job
-- are kept in job_signals until a wait of that name takes them (consumed = 1), oldest first.
-- Removed with their job.

ALTER TABLE job_steps ADD COLUMN wake_at REAL;

CREATE INDEX job_steps_waiting ON job_steps (wake_at) WHERE status = 'waiting';

CREATE TABLE job_signals (
    id       INTEGER PRIMARY KEY,
    job_id   INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    data     TEXT,
    sent_at  REAL    NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX job_signals_unread ON job_signals (job_id, name, id) WHERE consumed = 0;
