"""Every PostgreSQL statement wizd runs, under the name of its SQLite twin in sqlite_queries.

The store's transaction functions name statements by their sqlite_queries constant; the
PostgreSQL connection runs the statement of the same name from here. Where the two differ
in more than placeholders it is for concurrency: several daemons write at once, so claims
skip rows other transactions hold (FOR UPDATE SKIP LOCKED), and reads that decide a flow
(is every dependency done? every child final?) lock the row they are about to change, so
that two transactions ending the last two children of one parent cannot both miss the
other. Statements built at run time (an IN list of ids) are translated placeholder by
placeholder (wizd.store.pg_statements.translate).
"""

from __future__ import annotations

from wizd.store.sqlite_queries import JOB_COLUMNS, SCHEDULE_COLUMNS

SCHEMA_VERSION_CREATE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)
SCHEMA_VERSION_GET = "SELECT COALESCE(MAX(version), 0) FROM schema_version"
SCHEMA_VERSION_SET = "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)"
TABLE_NAMES = "SELECT tablename FROM pg_tables WHERE schemaname = %s"
# One advisory lock key for "migrating this schema" (any 64-bit number, fixed).
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('wizd.migrate.' || %s))"
COUNTS_FOLD_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('wizd.counts.' || current_schema()))"
# Is a VACUUM of jobs due: as many dead row versions as %(dead)s (a claim and a completion
# leave one each) and no vacuum, ours or autovacuum's, within the last %(every)s seconds?
JOBS_VACUUM_DUE = """
SELECT n_dead_tup >= %(dead)s
   AND COALESCE(GREATEST(last_vacuum, last_autovacuum), '-infinity')
       < now() - make_interval(secs => %(every)s)
FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'jobs'
"""
# Held for the vacuum (a session lock: VACUUM runs outside any transaction).
VACUUM_LOCK = "SELECT pg_try_advisory_lock(hashtext('wizd.vacuum.' || current_schema()))"
VACUUM_UNLOCK = "SELECT pg_advisory_unlock(hashtext('wizd.vacuum.' || current_schema()))"
VACUUM_JOBS = "VACUUM (SKIP_LOCKED) jobs"
# Paced as autovacuum paces itself (its default cost delay), so that claims and completions
# keep their share of the server while it runs.
VACUUM_PACE = "SET vacuum_cost_delay = '2ms'"
VACUUM_UNPACE = "RESET vacuum_cost_delay"
# Fold the pending count deltas into the totals (only under COUNTS_FOLD_LOCK).
COUNTS_FOLD = """
WITH moved AS (DELETE FROM job_count_deltas RETURNING queue, status, n)
INSERT INTO job_counts (queue, status, n)
SELECT queue, status, SUM(n) FROM moved GROUP BY queue, status
ON CONFLICT (queue, status) DO UPDATE SET n = job_counts.n + excluded.n
"""

# -- enqueue -------------------------------------------------------------------------------
_JOB_INSERT_COLUMNS = """queue, name, payload, status, priority, max_attempts, backoff, timeout,
                  run_at, expires_at, parent_id, batch_id, tags, context, error,
                  on_dependency_failure, on_child_failure, created_at, updated_at, finished_at,
                  kind, unique_key, unique_lock, unique_until, unique_states, concurrency_key"""
INSERT_JOB = f"""
INSERT INTO jobs ({_JOB_INSERT_COLUMNS})
VALUES ({", ".join(["%s"] * 26)})
RETURNING id
"""
# Nothing is inserted (no row returned) while another job holds the unique key; of two
# transactions inserting one key, the second waits for the first and then inserts nothing.
INSERT_JOB_UNIQUE = f"""
INSERT INTO jobs ({_JOB_INSERT_COLUMNS})
VALUES ({", ".join(["%s"] * 26)})
ON CONFLICT (unique_lock) WHERE unique_lock IS NOT NULL DO NOTHING
RETURNING id
"""
RESERVE_JOB_IDS = "SELECT nextval('jobs_id_seq') FROM generate_series(1, %s)"
INSERT_JOB_WITH_ID = f"""
INSERT INTO jobs (id, {_JOB_INSERT_COLUMNS})
VALUES ({", ".join(["%s"] * 27)})
"""
_JOB_PLAIN_COLUMNS = """id, queue, name, payload, status, priority, max_attempts, backoff,
                  timeout, run_at, created_at, updated_at"""
INSERT_JOB_PLAIN = f"""
INSERT INTO jobs ({_JOB_PLAIN_COLUMNS})
VALUES ({", ".join(["%s"] * 12)})
"""
INSERT_DEP = "INSERT INTO job_deps (job_id, depends_on) VALUES (%s, %s) ON CONFLICT DO NOTHING"
INSERT_EVENT = """
INSERT INTO job_events (job_id, at, kind, status, attempt, worker_id, message)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""

# Many rows of an INSERT as one statement taking one array per column (PgConn.insert_many):
# the text is the same for any number of rows, so the server plans it once. The types of
# the columns, in the order of the row statement's parameters; `<NAME>_MANY` goes with the
# statement NAME.
INSERT_EVENT_TYPES = ("bigint", "float8", "text", "text", "int", "text", "text")
INSERT_JOB_WITH_ID_TYPES = (
    "bigint",  # id
    *("text", "text", "text", "text", "int", "int", "text", "float8"),  # queue … timeout
    *("float8", "float8", "bigint", "text", "text", "text", "text"),  # run_at … error
    *("text", "text", "float8", "float8", "float8"),  # on_dependency_failure … finished_at
    *("text", "text", "text", "float8", "text", "text"),  # kind … concurrency_key
)

# INSERT_JOB of a job prepared with its queue's defaults as last read (the last parameter:
# their text, NULL for a queue without a row). Nothing is inserted (no row returned) if they
# have changed since; the enqueue is then prepared again in a transaction. Each parameter is
# cast to its column's type (INSERT_JOB_WITH_ID_TYPES, after the id): a SELECT list, unlike
# VALUES, does not take the types of the columns it is inserted into. Where a daemon
# offers free slots for the queue (the queue again, last), it asks for a hand-over
# (schema 7: wizd.hand_over, for its own transaction, run in autocommit), and the trigger
# wizd_hand_over may insert the job claimed for that daemon; it returns the job's id and
# that daemon's worker id (NULL: the job is pending).
INSERT_JOB_IF_DEFAULTS = f"""
INSERT INTO jobs ({_JOB_INSERT_COLUMNS})
SELECT {", ".join(f"%s::{kind}" for kind in INSERT_JOB_WITH_ID_TYPES[1:])}
WHERE (SELECT defaults FROM queues WHERE name = %s) IS NOT DISTINCT FROM %s::text
  AND CASE WHEN EXISTS (SELECT 1 FROM free_slots WHERE queue = %s)
      THEN set_config('wizd.hand_over', '1', true) = '1' ELSE TRUE END
RETURNING id, worker_id
"""

INSERT_JOB_PLAIN_TYPES = (
    *("bigint", "text", "text", "text", "text", "int", "int", "text"),  # id … backoff
    *("float8", "float8", "float8", "float8"),  # timeout, run_at, created_at, updated_at
)


def _from_arrays(types: tuple[str, ...]) -> str:
    return "SELECT * FROM unnest(" + ", ".join(f"%s::{t}[]" for t in types) + ")"


INSERT_EVENT_MANY = f"""
INSERT INTO job_events (job_id, at, kind, status, attempt, worker_id, message)
{_from_arrays(INSERT_EVENT_TYPES)}
"""
INSERT_JOB_WITH_ID_MANY = f"""
INSERT INTO jobs (id, {_JOB_INSERT_COLUMNS})
{_from_arrays(INSERT_JOB_WITH_ID_TYPES)}
"""
INSERT_JOB_PLAIN_MANY = f"""
INSERT INTO jobs ({_JOB_PLAIN_COLUMNS})
{_from_arrays(INSERT_JOB_PLAIN_TYPES)}
"""

# -- reads ---------------------------------------------------------------------------------
GET_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s"
GET_STATUS = "SELECT status FROM jobs WHERE id = %s"
DEPENDENCY_STATUS = "SELECT status FROM jobs WHERE id = %(dep)s FOR SHARE"
PARENT_ROW = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %(parent)s FOR UPDATE"
TAG_FILTER = "(tags::jsonb @> jsonb_build_array(%s::text))"
DEPENDENTS_OF = """
SELECT d.job_id FROM job_deps d JOIN jobs j ON j.id = d.job_id
WHERE d.depends_on = %s ORDER BY d.job_id FOR UPDATE OF j
"""
PEEK = f"""
SELECT {JOB_COLUMNS} FROM (
    (SELECT * FROM jobs WHERE queue = %(queue)s AND status = 'pending'
     ORDER BY priority DESC, run_at, id LIMIT %(n)s)
    UNION ALL
    (SELECT * FROM jobs WHERE queue = %(queue)s AND status = 'delayed'
     AND run_at <= %(now)s ORDER BY run_at LIMIT %(n)s)
) due
ORDER BY priority DESC, run_at, id LIMIT %(n)s
"""
EVENTS = """
SELECT id, at, kind, status, attempt, worker_id, message
FROM job_events WHERE job_id = %s ORDER BY at, id
"""
HISTORY_ROW = """
SELECT status, attempt, worker_id, created_at, started_at, finished_at FROM jobs WHERE id = %s
"""
COUNTS_ALL = """
SELECT queue, status, SUM(n)::bigint FROM (
    SELECT queue, status, n FROM job_counts
    UNION ALL SELECT queue, status, n FROM job_count_deltas
) c GROUP BY queue, status
"""
COUNTS_QUEUE = """
SELECT queue, status, SUM(n)::bigint FROM (
    SELECT queue, status, n FROM job_counts
    UNION ALL SELECT queue, status, n FROM job_count_deltas
) c WHERE queue = %s GROUP BY queue, status
"""
RECOUNT_ALL = "SELECT queue, status, COUNT(*) FROM jobs GROUP BY queue, status"
# One index seek per priority level on the claim index: O(log n) at any depth.
OLDEST_PENDING = """
SELECT MIN(m) FROM (
  SELECT MIN(run_at) AS m FROM jobs WHERE queue = %(q)s AND status = 'pending' AND priority = 5
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = %(q)s AND status = 'pending' AND priority = 4
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = %(q)s AND status = 'pending' AND priority = 3
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = %(q)s AND status = 'pending' AND priority = 2
  UNION ALL SELECT MIN(run_at) FROM jobs WHERE queue = %(q)s AND status = 'pending' AND priority = 1
) p
"""
STATS_FINISHED = """
SELECT COUNT(*), AVG(finished_at - started_at)
FROM jobs WHERE status = 'completed' AND finished_at >= %s AND queue = %s
"""
STATS_WAIT = """
SELECT AVG(started_at - run_at) FROM jobs
WHERE queue = %s AND started_at >= %s AND status NOT IN ('pending', 'delayed')
"""

# -- queues --------------------------------------------------------------------------------
QUEUE_ENSURE = "INSERT INTO queues (name) VALUES (%s) ON CONFLICT DO NOTHING"
QUEUE_GET = "SELECT name, paused, defaults FROM queues WHERE name = %s"
QUEUE_SET_PAUSED = "UPDATE queues SET paused = %s WHERE name = %s"
QUEUE_SET_DEFAULTS = "UPDATE queues SET defaults = %s WHERE name = %s"
QUEUES_ALL = """
SELECT q.name, COALESCE(qs.paused, 0), COALESCE(qs.defaults, '{}') FROM
  (SELECT name FROM queues UNION SELECT DISTINCT queue FROM job_counts
   UNION SELECT DISTINCT queue FROM job_count_deltas) q
  LEFT JOIN queues qs ON qs.name = q.name
ORDER BY q.name
"""

# -- the hot path --------------------------------------------------------------------------
# A claim returns each job's dependencies as one more column (after JOB_COLUMNS): the
# lookup SQLite's claim makes with DEPS_OF_MANY would cost another round trip here.
CLAIMED_DEPS = (
    "ARRAY(SELECT d.depends_on FROM job_deps d WHERE d.job_id = jobs.id ORDER BY d.depends_on)"
)
# Rows another daemon is promoting or claiming right now are skipped, not waited for.
PROMOTE_QUEUE = """
UPDATE jobs SET status = 'pending', updated_at = %(now)s
WHERE id IN (SELECT id FROM jobs WHERE status = 'delayed' AND queue = %(queue)s
             AND run_at <= %(now)s FOR UPDATE SKIP LOCKED)
RETURNING id, attempt
"""
PROMOTE_ALL = """
UPDATE jobs SET status = 'pending', updated_at = %(now)s
WHERE id IN (SELECT id FROM jobs WHERE status = 'delayed' AND run_at <= %(now)s
             FOR UPDATE SKIP LOCKED)
RETURNING id, attempt
"""
CLAIM = f"""
UPDATE jobs
SET status = 'running', attempt = attempt + 1, worker_id = %(worker)s, heartbeat_at = %(now)s,
    started_at = %(now)s, updated_at = %(now)s, error = NULL, progress = NULL,
    progress_message = NULL
WHERE id IN (
    SELECT id FROM jobs
    WHERE queue = %(queue)s AND status = 'pending'
    ORDER BY priority DESC, run_at, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
RETURNING {JOB_COLUMNS}, {CLAIMED_DEPS}
"""
# QUEUE_CLAIM_GET, PROMOTE_QUEUE and CLAIM of a queue without limits in one statement
# (wizd_claim, schema 6): the columns of CLAIM's rows. A queue with limits gives one row
# whose columns are all NULL: its claim then runs wizd.store.ops.claim.
CLAIM_QUEUE = (
    "SELECT "
    + ", ".join(f"(c.job).{column.strip()}" for column in JOB_COLUMNS.split(","))
    + ", c.deps FROM wizd_claim(%(queue)s, %(worker)s, %(now)s, %(n)s, %(listener)s, %(slots)s)"
    + " AS c"
)
# -- hand-over (schema 7) ------------------------------------------------------------------
# A listening session's key, and the session lock whose holding says it is alive (see
# wizd_hand_over); its channel is 'wizd_' || schema || ':' || key.
LISTENER_KEY = """
SELECT k, pg_advisory_lock(hashtext('wizd.listener.' || current_schema()), k)
FROM (SELECT nextval('listener_keys')::integer AS k) s
"""
# A worker that stops claiming withdraws the slots it offered.
FREE_SLOTS_WITHDRAW = "DELETE FROM free_slots WHERE queue = %s AND worker_id = %s"
# The free_slots rows of sessions that have ended (any daemon may delete them).
FREE_SLOTS_PRUNE = """
DELETE FROM free_slots
WHERE pg_try_advisory_xact_lock_shared(hashtext('wizd.listener.' || current_schema()), listener)
"""
FENCE = "id = %(id)s AND status = 'running' AND worker_id = %(worker)s AND attempt = %(attempt)s"
RUN_STATE = f"SELECT attempt, max_attempts, backoff FROM jobs WHERE {FENCE}"
FAIL_FINAL = f"""
UPDATE jobs SET status = 'failed', error = %(error)s, updated_at = %(now)s,
    finished_at = %(now)s
WHERE {FENCE}
"""
RETRY_DELAYED = f"""
UPDATE jobs SET status = 'delayed', error = %(error)s, run_at = %(run_at)s,
    updated_at = %(now)s, worker_id = NULL, heartbeat_at = NULL
WHERE {FENCE}
"""
RESCHEDULE = f"""
UPDATE jobs SET status = %(status)s, attempt = attempt - 1, run_at = %(run_at)s,
    updated_at = %(now)s, worker_id = NULL, heartbeat_at = NULL
WHERE {FENCE}
"""
WAIT_CHILDREN = f"""
UPDATE jobs SET status = 'waiting_children', result = %(result)s, updated_at = %(now)s,
    attempt = attempt - 1, worker_id = NULL, heartbeat_at = NULL
WHERE {FENCE}
"""
# SQLite's statements with {items} (rows of values) take one array per column here
# (PgConn.execute_rows; X_ARRAYS: the type of each). The text is the same for any number of
# rows, so it is planned once, where a VALUES list of a new length is planned anew each
# time: a daemon's batches vary in length (completions of 60-100 jobs: 0.6x the time).
#
# The completions find their rows by id (the primary key), never through jobs_running: each
# claim and completion leaves a dead entry in that partial index until a vacuum, so that
# index grows by one entry per job run, and a scan of it (which the planner picks while its
# statistics say few jobs run) visits every page those entries point to: 0.7 ms per 100
# completions after 20,000 jobs, and growing. `(status = 'running') IS TRUE` is the same
# fence, but not an index condition, so the partial index is left alone. The last column
# says whether any job depends on the completed one: only those need DEPENDENTS_OF_MANY.
COMPLETE_MANY = """
WITH done(id, worker, attempt, result) AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[]))
UPDATE jobs SET status = 'completed', result = done.result, error = NULL,
    updated_at = %s, finished_at = %s, progress = 1.0
FROM done
WHERE jobs.id = ANY(ARRAY(SELECT id FROM done)) AND jobs.id = done.id
  AND (jobs.status = 'running') IS TRUE AND jobs.worker_id = done.worker
  AND jobs.attempt = done.attempt
RETURNING jobs.id, jobs.parent_id, jobs.queue,
    EXISTS (SELECT 1 FROM job_deps d WHERE d.depends_on = jobs.id)
"""
COMPLETE_MANY_ARRAYS = ("bigint", "text", "int", "text")
# Locked, as DEPENDENTS_OF.
DEPENDENTS_OF_MANY = """
SELECT d.depends_on, d.job_id FROM job_deps d JOIN jobs j ON j.id = d.job_id
WHERE d.depends_on = ANY(%s::bigint[]) ORDER BY d.depends_on, d.job_id FOR UPDATE OF j
"""
DEPENDENTS_OF_MANY_ARRAYS = ("bigint",)
DEPS_OF_MANY = """
SELECT job_id, depends_on FROM job_deps WHERE job_id = ANY(%s::bigint[]) ORDER BY depends_on
"""
DEPS_OF_MANY_ARRAYS = ("bigint",)
PROGRESS = f"""
UPDATE jobs SET progress = %(progress)s, progress_message = %(message)s, updated_at = %(now)s
WHERE {FENCE}
"""
HEARTBEAT_JOBS = """
UPDATE jobs SET heartbeat_at = %(now)s
WHERE status = 'running' AND worker_id = %(worker)s
RETURNING id
"""
HEARTBEAT_WORKER = (
    "UPDATE workers SET heartbeat_at = %(now)s, busy = %(busy)s WHERE id = %(worker)s"
)

# -- recovery, reaping, expiry -------------------------------------------------------------
# Recovery skips the rows another transaction holds (a daemon frozen inside one holds them
# until the server ends it: idle_in_transaction_session_timeout), so that it never waits
# for them; a later pass of the reaper takes them. The rows it takes stay locked until it
# commits, so that its own UPDATEs of them never wait either.
RUNNING_OF_WORKER = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND worker_id = %s
ORDER BY id FOR UPDATE SKIP LOCKED
"""
RUNNING_STALE = f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND heartbeat_at < %s"
RUNNING_STALE_TO_REAP = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND heartbeat_at < %s
ORDER BY id FOR UPDATE SKIP LOCKED
"""
INTERRUPT_RETRY = """
UPDATE jobs SET status = 'pending', run_at = %(now)s, updated_at = %(now)s, worker_id = NULL,
    heartbeat_at = NULL, error = %(error)s
WHERE id = %(id)s AND status = 'running' AND attempt = %(attempt)s
"""
INTERRUPT_FAIL = """
UPDATE jobs SET status = 'failed', updated_at = %(now)s, finished_at = %(now)s,
    error = %(error)s
WHERE id = %(id)s AND status = 'running' AND attempt = %(attempt)s
"""
EXPIRED = """
SELECT id, status, attempt FROM jobs
WHERE expires_at IS NOT NULL AND expires_at <= %s
  AND status NOT IN ('completed', 'failed', 'cancelled')
ORDER BY id DESC FOR UPDATE SKIP LOCKED
"""

# -- operator changes ----------------------------------------------------------------------
SET_STATUS = """
UPDATE jobs SET status = %(status)s, updated_at = %(now)s,
    finished_at = CASE WHEN %(status)s IN ('completed', 'failed', 'cancelled')
                       THEN %(now)s END,
    error = COALESCE(%(error)s, error)
WHERE id = %(id)s AND status = %(from_status)s
"""
RETRY_JOB = """
UPDATE jobs SET status = %(status)s, attempt = 0, run_at = %(now)s, updated_at = %(now)s,
    expires_at = %(expires_at)s,
    finished_at = NULL, error = NULL, result = NULL, worker_id = NULL, heartbeat_at = NULL,
    progress = NULL, progress_message = NULL
WHERE id = %(id)s AND status IN ('failed', 'cancelled', 'completed')
"""
DELETE_JOB_EVENTS = "DELETE FROM job_events WHERE job_id = %s"
DELETE_JOB = "DELETE FROM jobs WHERE id = %s"
LIVE_DEPENDENTS = """
SELECT COUNT(*) FROM job_deps d JOIN jobs j ON j.id = d.job_id
WHERE d.depends_on = %s AND j.status NOT IN ('completed', 'failed', 'cancelled')
"""
LIVE_CHILDREN = """
SELECT EXISTS (SELECT 1 FROM jobs WHERE parent_id = %s
    AND status NOT IN ('completed', 'failed', 'cancelled'))
"""
CHILDREN_IDS = "SELECT id, status FROM jobs WHERE parent_id = %s"
CHILDREN_IDS_ONLY = "SELECT id FROM jobs WHERE parent_id = %s ORDER BY id"

# -- limits --------------------------------------------------------------------------------
# Locked: the limited claims of one queue take turns across daemons (QUEUE_CLAIM_GET, read
# by every claim, takes no lock: a queue without limits never waits on its row).
QUEUE_CLAIM_LOCK = """
SELECT name, paused, max_running, rate_count, rate_period, rate_burst, rate_tokens, rate_at,
       keyed
FROM queues WHERE name = %(queue)s FOR UPDATE
"""
# Counted from the rows: job_counts lags here by its deltas. PostgreSQL's planner, with its
# statistics, reads the queue's running jobs through jobs_running.
QUEUE_LOAD = """
SELECT (SELECT COUNT(*) FROM jobs WHERE queue = %(queue)s AND status = 'running'),
       (SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE queue = %(queue)s AND status = 'pending'
                              LIMIT %(n)s) AS p)
"""
# Locked in key order: the key limits span queues, so keyed claims of every queue take turns.
CLAIM_CONCURRENCY_LIMITS = "SELECT key, max_running FROM concurrency_limits ORDER BY key FOR UPDATE"
# As SQLite's, and the outer statement checks `pending` again: rows are not locked by the
# inner select (FOR UPDATE does not go with window functions), so a row that another
# transaction changed meanwhile is re-read by PostgreSQL and passed over.
CLAIM_KEYED = f"""
UPDATE jobs
SET status = 'running', attempt = attempt + 1, worker_id = %(worker)s,
    heartbeat_at = %(now)s, started_at = %(now)s, updated_at = %(now)s, error = NULL,
    progress = NULL, progress_message = NULL
WHERE status = 'pending' AND id IN (
    SELECT r.id FROM (
        SELECT c.id, c.concurrency_key,
               ROW_NUMBER() OVER (PARTITION BY c.concurrency_key
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS nth
        FROM (
            SELECT id, priority, run_at, concurrency_key FROM jobs
            WHERE queue = %(queue)s AND status = 'pending'
              AND (concurrency_key IS NULL OR concurrency_key NOT IN (
                    SELECT f.key FROM concurrency_limits f
                    WHERE f.max_running <= (SELECT COUNT(*) FROM jobs k
                        WHERE k.concurrency_key = f.key AND k.status = 'running')))
            ORDER BY priority DESC, run_at, id
            LIMIT %(n)s
        ) AS c
    ) AS r
    LEFT JOIN concurrency_limits l ON l.key = r.concurrency_key
    WHERE l.key IS NULL
       OR r.nth <= l.max_running - (SELECT COUNT(*) FROM jobs k
                                    WHERE k.concurrency_key = r.concurrency_key
                                      AND k.status = 'running')
)
RETURNING {JOB_COLUMNS}, {CLAIMED_DEPS}
"""

# -- the agent registry --------------------------------------------------------------------
WORKER_REGISTER = """
INSERT INTO workers (
    id, hostname, pid, queues, concurrency, version, started_at, heartbeat_at, metrics
)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
    metrics = excluded.metrics
"""
WORKER_STOPPED = "UPDATE workers SET stopped_at = %s, busy = 0 WHERE id = %s"
WORKERS_ALL = """
SELECT id, hostname, pid, queues, concurrency, version, started_at, heartbeat_at, stopped_at, busy,
    metrics
FROM workers ORDER BY started_at DESC
"""
WORKERS_WITH_RUNNING = """
SELECT DISTINCT worker_id FROM jobs WHERE status = 'running' AND worker_id IS NOT NULL
"""
WORKERS_PRUNE = """
DELETE FROM workers
WHERE (stopped_at IS NOT NULL AND stopped_at < %s) OR (stopped_at IS NULL AND heartbeat_at < %s)
"""

# -- flows ---------------------------------------------------------------------------------
DEPS_OF = "SELECT depends_on FROM job_deps WHERE job_id = %s ORDER BY depends_on"
DEP_STATUSES = """
SELECT j.id, j.status FROM job_deps d JOIN jobs j ON j.id = d.depends_on WHERE d.job_id = %s
"""
DELETE_DEP = "DELETE FROM job_deps WHERE job_id = %s AND depends_on = %s"
STATUS_AND_PARENT = "SELECT status, parent_id FROM jobs WHERE id = %s"
# Locked: of two transactions ending a parent's last two children, the second waits for the
# first and then sees its child final.
PARENT_POLICY = "SELECT status, on_child_failure FROM jobs WHERE id = %s FOR UPDATE"
CHILD_COUNT = "SELECT COUNT(*) FROM jobs WHERE parent_id = %s"
DEPTH = """
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT id, parent_id, 1 FROM jobs WHERE id = %s
    UNION ALL
    SELECT j.id, j.parent_id, up.depth + 1 FROM jobs j JOIN up ON j.id = up.parent_id
    WHERE up.depth < 1000
)
SELECT MAX(depth) FROM up
"""
SUBTREE = f"""
WITH RECURSIVE t(id, depth) AS (
    SELECT %s::bigint, 0
    UNION ALL
    SELECT j.id, t.depth + 1 FROM jobs j JOIN t ON j.parent_id = t.id WHERE t.depth < 1000
)
SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM t) ORDER BY id
"""
CHILDREN = f"SELECT {JOB_COLUMNS} FROM jobs WHERE parent_id = %s ORDER BY id"
DEPENDENCIES = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT depends_on FROM job_deps WHERE job_id = %s)
ORDER BY id
"""
DEPENDENTS = f"""
SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT job_id FROM job_deps WHERE depends_on = %s)
ORDER BY id
"""
END_CONSOLIDATED = """
UPDATE jobs SET status = %(status)s, result = %(result)s, error = %(error)s,
    updated_at = %(now)s, finished_at = %(now)s, progress = 1.0
WHERE id = %(id)s AND status = 'waiting_children'
"""

# -- schedules -----------------------------------------------------------------------------
# A schedule that another daemon is firing right now (or froze while firing) is skipped,
# not waited for: that daemon moves it on, or, if its transaction is ended instead, a later
# pass fires it.
SCHEDULES_DUE = f"""
SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE paused = 0 AND next_at <= %(now)s
ORDER BY next_at LIMIT %(n)s FOR UPDATE SKIP LOCKED
"""

# -- durable steps (wizd.store.steps) -------------------------------------------------------
STEP_FENCE = f"UPDATE jobs SET updated_at = %(now)s WHERE {FENCE}"
# A streamed piece: the run's own job still (its final pieces may follow its outcome).
STREAM_FENCE = (
    "SELECT 1 FROM jobs WHERE id = %(id)s AND worker_id = %(worker)s AND attempt = %(attempt)s"
)
STEP_COLUMNS = (
    "job_id, name, occurrence, position, kind, status, result, error, attempts, "
    "started_at, finished_at"
)
STEP_SAVE = f"""
INSERT INTO job_steps ({STEP_COLUMNS})
VALUES (%(id)s, %(name)s, %(occurrence)s, %(position)s, %(kind)s, %(status)s, %(result)s,
    %(error)s, %(attempts)s, %(started_at)s, %(now)s)
ON CONFLICT (job_id, name, occurrence) DO UPDATE SET position = excluded.position,
    status = excluded.status, result = excluded.result, error = excluded.error,
    attempts = job_steps.attempts + excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at
"""
STEPS_OF = f"SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = %s ORDER BY position"
STEPS_FORGET_FROM = "DELETE FROM job_steps WHERE job_id = %s AND position >= %s"
