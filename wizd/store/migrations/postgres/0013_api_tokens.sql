-- wizd schema version 13 (PostgreSQL): API tokens (wizd.tokens); see the SQLite migration
-- 0015 for what it holds.

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    role       TEXT NOT NULL CHECK (role IN ('read', 'enqueue', 'operate', 'admin')),
    queues     TEXT,
    hash       TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
