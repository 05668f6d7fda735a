"""The store's transaction functions shared by both backends, in one place for the stores
(sql.py, postgres.py): each runs inside the writer's transaction and either completes or
raises. Each concern lives in its own module beside this one:
- wizd.store.enqueue: new jobs' rows and their insertion (Inserter, Created).
- wizd.store.claims: promotion and claim of a queue's due jobs (ClaimRows).
- wizd.store.runs: a worker's outcomes, heartbeats, progress and log lines.
- wizd.store.sweeps: promotion of due jobs, recovery of lost runs, expiry."""

from __future__ import annotations

from wizd.store.claims import ClaimRows, claim, claimed_rows, claimed_with_deps
from wizd.store.enqueue import (
    UNIQUE_TRIES,
    Created,
    Inserter,
    Limits,
    enqueue,
    enqueue_plain,
    handed_row,
    initial_status,
    is_bare,
    is_plain,
    job_of,
    plain_pending_row,
    starts_pending_alone,
    still_holds,
)
from wizd.store.runs import finish, finish_many, heartbeat, log, progress
from wizd.store.sweeps import expire, interrupt, promote_due, reap_hung, recover_worker

__all__ = [
    "UNIQUE_TRIES",
    "ClaimRows",
    "Created",
    "Inserter",
    "Limits",
    "claim",
    "claimed_rows",
    "claimed_with_deps",
    "enqueue",
    "enqueue_plain",
    "expire",
    "finish",
    "finish_many",
    "handed_row",
    "heartbeat",
    "initial_status",
    "interrupt",
    "is_bare",
    "is_plain",
    "job_of",
    "log",
    "plain_pending_row",
    "progress",
    "promote_due",
    "reap_hung",
    "recover_worker",
    "starts_pending_alone",
    "still_holds",
]
