-- wizd schema version 14 (SQLite): where the change feed's trustworthy part begins.
--
-- A watcher resumes with `after=cursor`. That is exact only if the feed recorded every
-- change since that cursor. It did not when the rows after the cursor were pruned, or when
-- no lease was held for a while (the triggers wrote nothing). lost_before is the first
-- cursor the feed can still resume from. wizd.store.feed raises it as it prunes rows and
-- when a lease starts after a time with none, and turns away an older cursor with a clear
-- error instead of silently skipping events.

CREATE TABLE feed_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    lost_before INTEGER NOT NULL
);

INSERT INTO feed_state (id, lost_before) VALUES (1, 0);
