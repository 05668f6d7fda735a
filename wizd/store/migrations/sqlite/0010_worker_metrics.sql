-- wizd schema version 10 (SQLite): a daemon's row records where its metrics are served.
--
-- Two daemons on one host with metrics_port left unset take 9464 and the next free port:
-- `wizd agents` shows which daemon listens where (NULL: metrics off, or a daemon older
-- than this version).

ALTER TABLE workers ADD COLUMN metrics TEXT;
