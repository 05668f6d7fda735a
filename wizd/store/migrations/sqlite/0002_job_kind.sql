-- wizd schema version 2 (SQLite): what kind of job a row is ('job', or 'distributed' for a
-- parent whose sub-tasks are consolidated into its result when they are all final).

ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'job';
