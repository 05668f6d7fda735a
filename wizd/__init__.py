"""wizd: a durable job queue and worker daemon for AI agents."""

from __future__ import annotations

from wizd.agent import Agent, JobContext, SyncJobContext
from wizd.checks import SizeLimits
from wizd.errors import (
    ConfigError,
    CursorExpired,
    DependencyError,
    DuplicateJob,
    IllegalTransition,
    InvalidJob,
    JobFailed,
    JobNotFound,
    LostJob,
    NonDeterministic,
    QueueNotEmpty,
    QueueNotFound,
    RetryLater,
    ScheduleNotFound,
    SignalTimeout,
    StoreError,
    TokenNotFound,
    WaitTimeout,
    WizdError,
)
from wizd.model import (
    Backoff,
    Event,
    Job,
    JobOptions,
    JobStatus,
    QueueLimits,
    QueueStats,
    Rate,
    Role,
    Schedule,
    ScheduleRun,
    Token,
    WorkerInfo,
)
from wizd.queue import Queue, SyncQueue, connect, connect_sync
from wizd.step_model import Step
from wizd.store.feed import WatchEvent

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Backoff",
    "ConfigError",
    "CursorExpired",
    "DependencyError",
    "DuplicateJob",
    "Event",
    "IllegalTransition",
    "InvalidJob",
    "Job",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobOptions",
    "JobStatus",
    "LostJob",
    "NonDeterministic",
    "Queue",
    "QueueLimits",
    "QueueNotEmpty",
    "QueueNotFound",
    "QueueStats",
    "Rate",
    "RetryLater",
    "Role",
    "Schedule",
    "ScheduleNotFound",
    "ScheduleRun",
    "SignalTimeout",
    "SizeLimits",
    "Step",
    "StoreError",
    "SyncJobContext",
    "SyncQueue",
    "Token",
    "TokenNotFound",
    "WaitTimeout",
    "WatchEvent",
    "WizdError",
    "WorkerInfo",
    "__version__",
    "connect",
    "connect_sync",
]
