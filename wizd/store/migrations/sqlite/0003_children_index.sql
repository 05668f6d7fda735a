-- wizd schema version 3 (SQLite): children indexed with their status, so that "has this
-- parent an unfinished child?" is a few index probes instead of a read of every child.

DROP INDEX jobs_parent;
CREATE INDEX jobs_parent ON jobs (parent_id, status) WHERE parent_id IS NOT NULL;
