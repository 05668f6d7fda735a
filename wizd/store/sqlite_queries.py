"""Every SQLite statement wizd runs, by name. SQL lives here and in migrations/ only."""

from __future__ import annotations

JOB_COLUMNS = (
    "id, queue, name, payload, status, priority, attempt, max_attempts, backoff, timeout, "
    "run_at, expires_at, parent_id, batch_id, tags, context, result, error, progress, "
    "progress_message, worker_id, heartbeat_at, created_at, updated_at, started_at, "
    "finished_at, on_dependency_failure, on_child_failure, kind, unique_key, concurrency_key"
)

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
)
# A read-only connection's: the journal mode is the file's, which it may not change.
READER_PRAGMAS = PRAGMAS[1:]

SCHEMA_VERSION_CREATE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
)
SCHEMA_VERSION_GET = "SELECT COALESCE(MAX(version), 0) FROM schema_version"
SCHEMA_VERSION_SET = "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"
TABLE_NAMES = "SELECT name FROM sqlite_master WHERE type = 'table'"

DATA_VERSION = "PRAGMA data_version"

# -- enqueue -------------------------------------------------------------------------------
INSERT_JOB = """
INSERT INTO jobs (queue, name, payload, status, priority, max_attempts, backoff, timeout,
                  run_at, expires_at, parent_id, batch_id, tags, context, error,
                  on_dependency_failure, on_child_failure, created_at, updated_at, finished_at,
                  kind, unique_key, unique_lock, unique_until, unique_states, concurrency_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id
"""
# A job that takes a unique key: nothing is inserted (no row returned) while another job
# holds the key; the unique index decides, whichever process inserts first.
INSERT_JOB_UNIQUE = INSERT_JOB.replace(
    "RETURNING id\n",
    "ON CONFLICT (unique_lock) WHERE unique_lock IS NOT NULL DO NOTHING\nRETURNING id\n",
)
# Many jobs without links: ids reserved first, then one executemany. Under the write lock the
# next ids are max(id)+1, +2, … (PostgreSQL takes them from the jobs' sequence instead).
RESERVE_JOB_IDS = """
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
SELECT (SELECT COALESCE(MAX(id), 0) FROM jobs) + i FROM s
"""
INSERT_JOB_WITH_ID = """
INSERT INTO jobs (id, queue, name, payload, status, priority, max_attempts, backoff, timeout,
                  run_at, expires_at, parent_id, batch_id, tags, context, error,
                  on_dependency_failure, on_child_failure, created_at, updated_at, finished_at,
                  kind, unique_key, unique_lock, unique_until, unique_states, concurrency_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# INSERT_JOB_WITH_ID for a batch of rows whose other columns all hold the table's defaults
# (NULL, or the DEFAULT the schema gives): the usual bulk enqueue binds 12 values a row
# instead of 27 (about a third less time in the statement; PostgreSQL sends 12 arrays).
INSERT_JOB_PLAIN = """
INSERT INTO jobs (id, queue, name, payload, status, priority, max_attempts, backoff, timeout,
                  run_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_DEP = "INSERT OR IGNORE INTO job_deps (job_id, depends_on) VALUES (?, ?)"
INSERT_EVENT = """
INSERT INTO job_events (job_id, at, kind, status, attempt, worker_id, message)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

# -- reads ---------------------------------------------------------------------------------
GET_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
GET_STATUS = "SELECT status FROM jobs WHERE id = ?"
# The status of a job that a job being written will depend on. PostgreSQL share-locks the
# row, so that the dependency cannot become final unseen while the dependent is written.
DEPENDENCY_STATUS = "SELECT status FROM jobs WHERE id = :dep"
# A parent about to gain a child (PostgreSQL locks it: its last child cannot end unseen).
PARENT_ROW = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = :parent"
# jobs_queue_status's condition (schema 9), which a query must spell out to use it.
QUEUE_STATUS_INDEXED = "status <> 'pending' AND status <> 'running' AND status <> 'completed'"
# list_jobs: jobs carrying a tag (tags are a JSON array of strings).
TAG_FILTER = "EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ?)"
DEPS_OF_MANY = (
    "SELECT job_id, depends_on FROM job_deps WHERE job_id IN ({items}) ORDER BY depends_on"
)
DEPENDENTS_OF = "SELECT job_id FROM job_deps WHERE depends_on = ? ORDER BY job_id"
# What claim would hand out: pending jobs and delayed ones already due (claim promotes
# those first), each side read through its own partial index.
PEEK = f"""
SELECT {JOB_COLUMNS} FROM (
    SELECT * FROM (SELECT * FROM jobs WHERE queue = :queue AND status = 'pending'
                   ORDER BY priority DESC, run_at, id LIMIT :n)
    UNION ALL
    SELECT * FROM (SELECT * FROM jobs WHERE queue = :queue AND status = 'delayed'
                   AND run_at <= :now ORDER BY run_at LIMIT :n)
)
ORDER BY priority DESC, run_at, id LIMIT :n
"""
# A job's stored events; wizd.store.reads.events adds those its row holds (schema 6).
EVENTS = """
SELECT id, at, kind, status, attempt, worker_id, message
FROM job_events WHERE job_id = ? ORDER BY at, id
"""
HISTORY_ROW = (
    "SELECT status, attempt, worker_id, created_at, started_at, finished_at FROM jobs WHERE id = ?"
)
COUNTS_ALL = "SELECT queue, status, n FROM job_counts"
# n jobs more (or, n < 0, fewer) of a queue in a status: (queue, status, n). The inserts
# (schema 7), claims and completions (schema 5) count themselves with it, once per statement
# and (queue, status) (wizd.store.rows.counted); a trigger counts every other change.
COUNT_ADD = """
INSERT INTO job_counts (queue, status, n) VALUES (?, ?, ?)
ON CONFLICT (queue, status) DO UPDATE SET n = n + excluded.n
"""
COUNTS_QUEUE = "SELECT queue, status, n FROM job_counts WHERE queue = ?"
RECOUNT_ALL = "SELECT queue, status, COUNT(*) FROM jobs GROUP BY queue, status"
# One index seek per priority level on the claim index: O(log n) at any depth.
OLDEST_PENDING = """
SELECT MIN(m) FROM (
  SELECT MIN(run_at) AS m FROM jobs WHERE queue = :q AND status = 'pending' AND priority = 5
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = :q AND status = 'pending' AND priority = 4
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = :q AND status = 'pending' AND priority = 3
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = :q AND status = 'pending' AND priority = 2
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = :q AND status = 'pending' AND priority = 1
)
"""
STATS_FINISHED = """
SELECT COUNT(*), AVG(finished_at - started_at)
FROM jobs WHERE status = 'completed' AND finished_at >= ? AND queue = ?
"""
STATS_WAIT = """
SELECT AVG(started_at - run_at) FROM jobs
WHERE queue = ? AND started_at >= ? AND status NOT IN ('pending', 'delayed')
"""

# -- queues --------------------------------------------------------------------------------
QUEUE_ENSURE = "INSERT OR IGNORE INTO queues (name) VALUES (?)"
QUEUE_GET = "SELECT name, paused, defaults FROM queues WHERE name = ?"
QUEUE_SET_PAUSED = "UPDATE queues SET paused = ? WHERE name = ?"
QUEUE_SET_DEFAULTS = "UPDATE queues SET defaults = ? WHERE name = ?"
QUEUE_JOBS_BY_STATUS = "SELECT status, COUNT(*) FROM jobs WHERE queue = ? GROUP BY status"
QUEUE_SCHEDULES = "SELECT id FROM schedules WHERE queue = ? ORDER BY id"
QUEUE_COUNTED = "SELECT 1 FROM job_counts WHERE queue = ? LIMIT 1"
QUEUE_DELETE = "DELETE FROM queues WHERE name = ?"
QUEUE_COUNTS_DELETE = "DELETE FROM job_counts WHERE queue = ?"
# PostgreSQL only: the count deltas not yet folded into job_counts (they sum to 0 here).
QUEUE_COUNT_DELTAS_DELETE = "DELETE FROM job_count_deltas WHERE queue = ?"
QUEUES_ALL = """
SELECT q.name, COALESCE(qs.paused, 0), COALESCE(qs.defaults, '{}') FROM
  (SELECT name FROM queues UNION SELECT DISTINCT queue FROM job_counts) q
  LEFT JOIN queues qs ON qs.name = q.name
ORDER BY q.name
"""

# -- unique jobs ---------------------------------------------------------------------------
# The holder of a key lets it go once its status is not one that keeps the key and its
# period has passed. One conditional statement on the holder's own row: a concurrent
# enqueue of the same key waits for it (PostgreSQL re-checks the row) or finds it gone.
UNIQUE_RELEASE_STALE = """
UPDATE jobs SET unique_lock = NULL
WHERE unique_lock = :key
  AND (unique_until IS NULL OR unique_until <= :now)
  AND unique_states NOT LIKE '%,' || status || ',%'
"""
# The job holding a key, and what keeps it held (unique_until, unique_states).
UNIQUE_HOLDER = f"SELECT {JOB_COLUMNS}, unique_until, unique_states FROM jobs WHERE unique_lock = ?"
# A replaced job gives its key up at once (its period no longer matters).
UNIQUE_RELEASE_JOB = "UPDATE jobs SET unique_lock = NULL WHERE id = ? AND unique_lock IS NOT NULL"

# -- limits --------------------------------------------------------------------------------
# What a claim reads first: paused, and whether any limit applies (none: the plain CLAIM).
# This is the queue row every claim of the queue reads, so a backend with row locks can
# lock it here to serialise the limited claims of one queue across daemons.
QUEUE_CLAIM_GET = """
SELECT name, paused, max_running, rate_count, rate_period, rate_burst, rate_tokens, rate_at,
       keyed
FROM queues WHERE name = ?
"""
# The same row, read again first by a claim that limits apply to. PostgreSQL locks it here,
# so that the limited claims of one queue take turns across daemons (and see each other's
# running jobs), while the plain claim of a queue without limits never waits on it.
QUEUE_CLAIM_LOCK = """
SELECT q.name, q.paused, q.max_running, q.rate_count, q.rate_period, q.rate_burst,
       q.rate_tokens, q.rate_at, q.keyed
FROM queues AS q WHERE q.name = :queue
"""
# Running jobs of the queue (as job_counts has them: exact in every transaction; no index
# holds running jobs by queue since schema 9), and pending ones counted up to :n (the
# claim's wish), from the claim index (else SQLite walks the queue's jobs by creation).
QUEUE_LOAD = """
SELECT COALESCE((SELECT n FROM job_counts WHERE queue = :queue AND status = 'running'), 0),
       (SELECT COUNT(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_claim
                              WHERE queue = :queue AND status = 'pending' LIMIT :n) AS p)
"""
QUEUE_TAKE_TOKENS = "UPDATE queues SET rate_tokens = :tokens, rate_at = :now WHERE name = :queue"
# Read by a claim of a queue that has had jobs with concurrency keys, before CLAIM_KEYED
# (a backend with row locks locks these rows here: the limits span queues).
CLAIM_CONCURRENCY_LIMITS = "SELECT key, max_running FROM concurrency_limits ORDER BY key"
QUEUE_MARK_KEYED = "UPDATE queues SET keyed = 1 WHERE name = ? AND keyed = 0"
QUEUE_LIMITS_GET = """
SELECT name, max_running, rate_count, rate_period, rate_burst, rate_tokens, rate_at
FROM queues WHERE name = ?
"""
QUEUE_LIMITS_ALL = """
SELECT name, max_running, rate_count, rate_period, rate_burst, rate_tokens, rate_at
FROM queues WHERE max_running IS NOT NULL OR rate_count IS NOT NULL ORDER BY name
"""
QUEUE_SET_LIMITS = """
UPDATE queues SET max_running = :max_running, rate_count = :rate_count,
    rate_period = :rate_period, rate_burst = :rate_burst, rate_tokens = :rate_tokens,
    rate_at = :rate_at
WHERE name = :queue
"""
CONCURRENCY_LIMITS_ALL = "SELECT key, max_running FROM concurrency_limits ORDER BY key"
CONCURRENCY_LIMIT_SET = """
INSERT INTO concurrency_limits (key, max_running) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET max_running = excluded.max_running
"""
CONCURRENCY_LIMIT_DELETE = "DELETE FROM concurrency_limits WHERE key = ?"

# -- the hot path --------------------------------------------------------------------------
PROMOTE_QUEUE = """
UPDATE jobs SET status = 'pending', updated_at = :now
WHERE status = 'delayed' AND queue = :queue AND run_at <= :now
RETURNING id, attempt
"""
PROMOTE_ALL = """
UPDATE jobs SET status = 'pending', updated_at = :now
WHERE status = 'delayed' AND run_at <= :now
RETURNING id, attempt
"""
CLAIM = f"""
UPDATE jobs
SET status = 'running', attempt = attempt + 1, worker_id = :worker, heartbeat_at = :now,
    started_at = :now, updated_at = :now, error = NULL, progress = NULL, progress_message = NULL
WHERE id IN (
    SELECT id FROM jobs
    WHERE queue = :queue AND status = 'pending'
    ORDER BY priority DESC, run_at, id
    LIMIT :n
)
RETURNING {JOB_COLUMNS}
"""
# CLAIM for a queue whose jobs may carry concurrency keys: jobs of a key at its limit are
# passed over (the claim takes the jobs behind them), and of the first :n jobs in claim
# order, no more of a key than its limit has room for.
CLAIM_KEYED = f"""
UPDATE jobs
SET status = 'running', attempt = attempt + 1, worker_id = :worker, heartbeat_at = :now,
    started_at = :now, updated_at = :now, error = NULL, progress = NULL, progress_message = NULL
WHERE id IN (
    SELECT r.id FROM (
        SELECT c.id, c.concurrency_key,
               ROW_NUMBER() OVER (PARTITION BY c.concurrency_key
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS nth
        FROM (
            SELECT id, priority, run_at, concurrency_key FROM jobs
            WHERE queue = :queue AND status = 'pending'
              AND (concurrency_key IS NULL OR concurrency_key NOT IN (
                    SELECT f.key FROM concurrency_limits f
                    WHERE f.max_running <= (SELECT COUNT(*) FROM jobs k
                        WHERE k.concurrency_key = f.key AND k.status = 'running')))
            ORDER BY priority DESC, run_at, id
            LIMIT :n
        ) AS c
    ) AS r
    LEFT JOIN concurrency_limits l ON l.key = r.concurrency_key
    WHERE l.key IS NULL
       OR r.nth <= l.max_running - (SELECT COUNT(*) FROM jobs k
                                    WHERE k.concurrency_key = r.concurrency_key
                                      AND k.status = 'running')
)
RETURNING {JOB_COLUMNS}
"""
# Every write that finishes a run is fenced on (id, running, worker, attempt).
FENCE = "id = :id AND status = 'running' AND worker_id = :worker AND attempt = :attempt"
RUN_STATE = f"SELECT attempt, max_attempts, backoff FROM jobs WHERE {FENCE}"
# One completion: the per-job step of the stdlib floor in bench/core.py (wizd completes in
# batches, COMPLETE_MANY). Whoever runs it counts the move with COUNT_ADD (schema 5).
COMPLETE = f"""
UPDATE jobs SET status = 'completed', result = :result, error = NULL, updated_at = :now,
    finished_at = :now, progress = 1.0
WHERE {FENCE}
"""
FAIL_FINAL = f"""
UPDATE jobs SET status = 'failed', error = :error, updated_at = :now, finished_at = :now
WHERE {FENCE}
"""
RETRY_DELAYED = f"""
UPDATE jobs SET status = 'delayed', error = :error, run_at = :run_at, updated_at = :now,
    worker_id = NULL, heartbeat_at = NULL
WHERE {FENCE}
"""
# Run again later without charging an attempt.
RESCHEDULE = f"""
UPDATE jobs SET status = :status, attempt = attempt - 1, run_at = :run_at, updated_at = :now,
    worker_id = NULL, heartbeat_at = NULL
WHERE {FENCE}
"""
WAIT_CHILDREN = f"""
UPDATE jobs SET status = 'waiting_children', result = :result, updated_at = :now,
    attempt = attempt - 1,    worker_id = NULL, heartbeat_at = NULL
WHERE {FENCE}
"""
# The completions of a batch in one statement ({items}: rows of id, worker, attempt, result).
COMPLETE_MANY = """
WITH done(id, worker, attempt, result) AS (VALUES {items})
UPDATE jobs SET status = 'completed', result = done.result, error = NULL, updated_at = ?,
    finished_at = ?, progress = 1.0
FROM done
WHERE jobs.id = done.id AND jobs.status = 'running' AND jobs.worker_id = done.worker
  AND jobs.attempt = done.attempt
RETURNING jobs.id, jobs.parent_id, jobs.queue
"""
# Jobs that depend on any of the given jobs ({items}: their ids), as (dependency, dependent).
DEPENDENTS_OF_MANY = """
SELECT d.depends_on, d.job_id FROM job_deps d WHERE d.depends_on IN ({items})
ORDER BY d.depends_on, d.job_id
"""
PROGRESS = f"""
UPDATE jobs SET progress = :progress, progress_message = :message, updated_at = :now
WHERE {FENCE}
"""
HEARTBEAT_JOBS = """
UPDATE jobs SET heartbeat_at = :now
WHERE status = 'running' AND worker_id = :worker
RETURNING id
"""
# Only the runs the daemon knows it runs: a claim whose answer was lost with its connection
# leaves jobs `running` for this worker that it never heard of; they must go stale and be
# reaped, not be kept alive by the worker's heartbeat.
HEARTBEAT_RUNS = """
UPDATE jobs SET heartbeat_at = ?
WHERE status = 'running' AND worker_id = ? AND id IN ({ids})
RETURNING id
"""
OWNED = """
SELECT id, attempt FROM jobs WHERE worker_id = ? AND status = 'running' AND id IN ({ids})
"""
HEARTBEAT_WORKER = "UPDATE workers SET heartbeat_at = :now, busy = :busy WHERE id = :worker"

# -- recovery, reaping, expiry -------------------------------------------------------------
RUNNING_OF_WORKER = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND worker_id = ?
"""
RUNNING_STALE = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND heartbeat_at < ?
"""
# The reaper's: on PostgreSQL it skips (and so leaves for a later pass) the rows another
# transaction holds, and locks those it takes.
RUNNING_STALE_TO_REAP = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND heartbeat_at < ? ORDER BY id
"""
INTERRUPT_RETRY = """
UPDATE jobs SET status = 'pending', run_at = :now, updated_at = :now, worker_id = NULL,
    heartbeat_at = NULL, error = :error
WHERE id = :id AND status = 'running' AND attempt = :attempt
"""
INTERRUPT_FAIL = """
UPDATE jobs SET status = 'failed', updated_at = :now, finished_at = :now, error = :error
WHERE id = :id AND status = 'running' AND attempt = :attempt
"""
# Newest first, so sub-tasks expire before the parents that consolidate them. The status
# test is spelled as in the jobs_expiring index (schema 8), so that SQLite uses it.
EXPIRED = """
SELECT id, status, attempt FROM jobs
WHERE expires_at IS NOT NULL AND expires_at <= ?
  AND status <> 'completed' AND status <> 'failed' AND status <> 'cancelled'
ORDER BY id DESC
"""

# -- operator changes ----------------------------------------------------------------------
SET_STATUS = """
UPDATE jobs SET status = :status, updated_at = :now,
    finished_at = CASE WHEN :status IN ('completed', 'failed', 'cancelled') THEN :now END,
    error = COALESCE(:error, error)
WHERE id = :id AND status = :from_status
"""
RETRY_JOB = """
UPDATE jobs SET status = :status, attempt = 0, run_at = :now, updated_at = :now,
    expires_at = :expires_at,
    finished_at = NULL, error = NULL, result = NULL, worker_id = NULL, heartbeat_at = NULL,
    progress = NULL, progress_message = NULL
WHERE id = :id AND status IN ('failed', 'cancelled', 'completed')
"""
DELETE_JOB_EVENTS = "DELETE FROM job_events WHERE job_id = ?"
DELETE_JOB = "DELETE FROM jobs WHERE id = ?"
LIVE_DEPENDENTS = """
SELECT COUNT(*) FROM job_deps d JOIN jobs j ON j.id = d.job_id
WHERE d.depends_on = ? AND j.status NOT IN ('completed', 'failed', 'cancelled')
"""
LIVE_CHILDREN = """
SELECT EXISTS (SELECT 1 FROM jobs WHERE parent_id = ?
    AND status NOT IN ('completed', 'failed', 'cancelled'))
"""
CHILDREN_IDS = "SELECT id, status FROM jobs WHERE parent_id = ?"
CHILDREN_IDS_ONLY = "SELECT id FROM jobs WHERE parent_id = ? ORDER BY id"
CLEANUP_CANDIDATES = """
SELECT j.id FROM jobs j
WHERE j.status IN ({statuses}) AND j.finished_at < ?
  AND (j.parent_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs p WHERE p.id = j.parent_id
        AND p.status NOT IN ('completed', 'failed', 'cancelled')))
ORDER BY j.id
"""

# -- the agent registry --------------------------------------------------------------------
WORKER_REGISTER = """
INSERT INTO workers (
    id, hostname, pid, queues, concurrency, version, started_at, heartbeat_at, metrics
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
    metrics = excluded.metrics
"""
WORKER_STOPPED = "UPDATE workers SET stopped_at = ?, busy = 0 WHERE id = ?"
WORKERS_ALL = """
SELECT id, hostname, pid, queues, concurrency, version, started_at, heartbeat_at, stopped_at, busy,
    metrics
FROM workers ORDER BY started_at DESC
"""
WORKERS_WITH_RUNNING = """
SELECT DISTINCT worker_id FROM jobs WHERE status = 'running' AND worker_id IS NOT NULL
"""
# Stopped before the cutoff, or silent since it (dead: killed, or its host is gone).
WORKERS_PRUNE = """
DELETE FROM workers
WHERE (stopped_at IS NOT NULL AND stopped_at < ?) OR (stopped_at IS NULL AND heartbeat_at < ?)
"""

# -- flows ---------------------------------------------------------------------------------
DEPS_OF = "SELECT depends_on FROM job_deps WHERE job_id = ? ORDER BY depends_on"
DEP_STATUSES = """
SELECT j.id, j.status FROM job_deps d JOIN jobs j ON j.id = d.depends_on WHERE d.job_id = ?
"""
DELETE_DEP = "DELETE FROM job_deps WHERE job_id = ? AND depends_on = ?"
STATUS_AND_PARENT = "SELECT status, parent_id FROM jobs WHERE id = ?"
PARENT_POLICY = "SELECT status, on_child_failure FROM jobs WHERE id = ?"
CHILD_COUNT = "SELECT COUNT(*) FROM jobs WHERE parent_id = ?"
DEPTH = """
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT id, parent_id, 1 FROM jobs WHERE id = ?
    UNION ALL
    SELECT j.id, j.parent_id, up.depth + 1 FROM jobs j JOIN up ON j.id = up.parent_id
    WHERE up.depth < 1000
)
SELECT MAX(depth) FROM up
"""
SUBTREE = f"""
WITH RECURSIVE t(id, depth) AS (
    SELECT ?, 0
    UNION ALL
    SELECT j.id, t.depth + 1 FROM jobs j JOIN t ON j.parent_id = t.id WHERE t.depth < 1000
)
SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM t) ORDER BY id
"""
CHILDREN = f"SELECT {JOB_COLUMNS} FROM jobs WHERE parent_id = ? ORDER BY id"
DEPENDENCIES = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT depends_on FROM job_deps WHERE job_id = ?)
ORDER BY id
"""
DEPENDENTS = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT job_id FROM job_deps WHERE depends_on = ?)
ORDER BY id
"""
# A distributed parent ends completed, or failed (with `error`) if a sub-task did not complete.
END_CONSOLIDATED = """
UPDATE jobs SET status = :status, result = :result, error = :error, updated_at = :now,
    finished_at = :now, progress = 1.0
WHERE id = :id AND status = 'waiting_children'
"""

# -- schedules -----------------------------------------------------------------------------
SCHEDULE_COLUMNS = (
    "id, key, queue, name, payload, options, cron, every, timezone, catch_up, paused, "
    "next_at, last_at, created_at, updated_at"
)
# A schedule with a key that exists is updated in place (a program may declare its
# schedules at every start): it keeps its paused state, and its next occurrence unless
# its timing changed.
SCHEDULE_UPSERT = f"""
INSERT INTO schedules (key, queue, name, payload, options, cron, every, timezone, catch_up,
                       paused, next_at, created_at, updated_at)
VALUES (:key, :queue, :name, :payload, :options, :cron, :every, :timezone, :catch_up,
        :paused, :next_at, :now, :now)
ON CONFLICT (key) DO UPDATE SET
    queue = excluded.queue, name = excluded.name, payload = excluded.payload,
    options = excluded.options, catch_up = excluded.catch_up, updated_at = excluded.updated_at,
    next_at = CASE WHEN COALESCE(schedules.cron, '') <> COALESCE(excluded.cron, '')
                     OR COALESCE(schedules.every, 0) <> COALESCE(excluded.every, 0)
                     OR schedules.timezone <> excluded.timezone
                   THEN excluded.next_at ELSE schedules.next_at END,
    cron = excluded.cron, every = excluded.every, timezone = excluded.timezone
RETURNING {SCHEDULE_COLUMNS}
"""
SCHEDULE_GET = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?"
SCHEDULE_GET_BY_KEY = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE key = ?"
SCHEDULES_ALL = f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id"
SCHEDULE_DELETE = "DELETE FROM schedules WHERE id = ?"
SCHEDULE_SET_PAUSED = f"""
UPDATE schedules SET paused = :paused, next_at = :next_at, updated_at = :now WHERE id = :id
RETURNING {SCHEDULE_COLUMNS}
"""
SCHEDULES_DUE = f"""
SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE paused = 0 AND next_at <= :now
ORDER BY next_at LIMIT :n
"""
SCHEDULES_NEXT_DUE = "SELECT MIN(next_at) FROM schedules WHERE paused = 0"
# Move a due schedule on, only from the next occurrence this daemon read: of daemons
# firing the same schedule at once, one moves it and enqueues; the others change nothing.
SCHEDULE_ADVANCE = """
UPDATE schedules SET next_at = :next_at, last_at = COALESCE(:last_at, last_at),
    updated_at = :now
WHERE id = :id AND paused = 0 AND next_at = :seen
"""
# The unique (schedule, fire time) key: an occurrence is enqueued only by whoever inserts
# its row (no row returned: it was enqueued already).
SCHEDULE_RUN_INSERT = """
INSERT INTO schedule_runs (schedule_id, fire_at, fired_at) VALUES (?, ?, ?)
ON CONFLICT (schedule_id, fire_at) DO NOTHING
RETURNING schedule_id
"""
SCHEDULE_RUN_JOB = "UPDATE schedule_runs SET job_id = ? WHERE schedule_id = ? AND fire_at = ?"
SCHEDULE_RUNS = """
SELECT schedule_id, fire_at, job_id, fired_at FROM schedule_runs WHERE schedule_id = ?
ORDER BY fire_at DESC LIMIT ?
"""
SCHEDULE_RUNS_PRUNE = "DELETE FROM schedule_runs WHERE fired_at < ?"

# -- durable steps (wizd.store.steps) -------------------------------------------------------
STEP_FENCE = f"UPDATE jobs SET updated_at = :now WHERE {FENCE}"
# A streamed piece: the run's own job still (its final pieces may follow its outcome).
STREAM_FENCE = "SELECT 1 FROM jobs WHERE id = :id AND worker_id = :worker AND attempt = :attempt"
STEP_COLUMNS = (
    "job_id, name, occurrence, position, kind, status, result, error, attempts, "
    "started_at, finished_at"
)
STEP_SAVE = f"""
INSERT INTO job_steps ({STEP_COLUMNS})
VALUES (:id, :name, :occurrence, :position, :kind, :status, :result, :error, :attempts,
    :started_at, :now)
ON CONFLICT (job_id, name, occurrence) DO UPDATE SET position = excluded.position,
    status = excluded.status, result = excluded.result, error = excluded.error,
    attempts = job_steps.attempts + excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at
"""
STEPS_OF = f"SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = ? ORDER BY position"
STEPS_FORGET_FROM = "DELETE FROM job_steps WHERE job_id = ? AND position >= ?"
