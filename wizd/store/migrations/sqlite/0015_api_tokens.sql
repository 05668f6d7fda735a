-- wizd schema version 15 (SQLite): API tokens (wizd.tokens), kept in the database so that
-- every host and daemon sharing it shares them.
--
-- A token's secret is never stored: `hash` is the SHA-256 of it, in hex. `queues` is a JSON
-- list of the queues the token may touch, NULL for every queue. Times are epoch seconds.

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    role       TEXT NOT NULL CHECK (role IN ('read', 'enqueue', 'operate', 'admin')),
    queues     TEXT,
    hash       TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
