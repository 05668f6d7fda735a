"""The Python API on generated input: every call either succeeds or raises a WizdError, and
SQLite and PostgreSQL give the same kind of outcome (success, or the same error class).

Each example is one call of a public method of the client (through wizd.connect_sync: the
blocking client runs the async one, so both are covered) or of a processor's JobContext,
made on both backends with the same arguments: text with NUL, lone surrogates, odd digits
and huge strings; integers past 64 bits, negative, floats, NaN, infinities, bools; JSON
deep, wide and of odd types; and values of the wrong type altogether.

The CI run is short (600 calls, a few seconds). Run it longer with WIZD_API_FUZZ_EXAMPLES=8000.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wizd
from tests.conftest import FakeClock
from wizd.agent import JobContext
from wizd.errors import WizdError

settings.register_profile(
    "wizd-api-ci",
    max_examples=int(os.environ.get("WIZD_API_FUZZ_EXAMPLES", "600")),
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("wizd-api-ci")

SEED_JOBS = 4  # jobs every example may refer to by index (their ids differ by backend)


@dataclass(frozen=True)
class Ref:
    """The id of the i-th job made at the start."""

    index: int


@dataclass(frozen=True)
class JobRef:
    """The Job object of the i-th job made at the start (as read on each backend)."""

    index: int


@dataclass(frozen=True)
class Call:
    target: str  # "q" (the client) or "ctx" (a processor's JobContext)
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            try:
                text = repr(v)
            except ValueError:  # holds an int of more digits than str() makes
                text = f"<{type(v).__name__} holding a huge int>"
            return text if len(text) < 80 else text[:77] + "..."

        shown = [short(a) for a in self.args] + [f"{k}={short(v)}" for k, v in self.kwargs.items()]
        return f"{self.target}.{self.method}({', '.join(shown)})"


# -- values ---------------------------------------------------------------------------------
ODD_CHARS = ["\x00", "\ud800", "\udfff", "a", "é", "\n", " ", "0", "7", "²", "٣", "/", ":", "*"]
HUGE = st.sampled_from(["q" * 201, "x" * 70_000, "y" * 1_100_000])
texts = st.one_of(
    st.text(max_size=20),
    st.text(st.sampled_from(ODD_CHARS), max_size=12),
    st.sampled_from(["default", "t", "completed", "failed", "60/min", "UTC", "0 9 * * *"]),
    HUGE,
)
ints = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1, 3, 10_000, 10_001, 2**63 - 1, 2**63, -(2**63), 10**20, 10**400]),
    st.just(5000).map(lambda n: -(10**n)),  # more digits than str() of an int makes
)
floats = st.one_of(
    st.floats(), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 0.5])
)
times = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC])),
    st.datetimes(),  # naive
    st.sampled_from([datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)]),
)
durations = st.one_of(st.timedeltas(), st.sampled_from([timedelta.max, timedelta.min]))


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), ints, floats, texts),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Deep:
    """JSON nested `depth` levels deep, made at the call (printing it would recurse)."""

    depth: int


deep = st.builds(Deep, st.sampled_from([99, 100, 101, 500, 5_000, 50_000]))
odd = st.one_of(
    st.just(object()),
    st.binary(max_size=8),
    st.sampled_from([b"\xff\xfe", bytearray(b"x"), {1, 2}, frozenset(), (1, "a"), range(3)]),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.sampled_from([wizd.JobStatus.FAILED, Ellipsis, NotImplemented, print, type]),
)
anything = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    texts,
    times,
    durations,
    odd,
    json_values,
    deep,
    st.lists(st.one_of(texts, ints, st.none()), max_size=4),
)


def small_id(value: object) -> bool:
    """Whether job_id would read `value` as an id that may exist on one backend only."""
    if isinstance(value, int) and not isinstance(value, bool):
        return 0 < value <= 10**12
    if isinstance(value, str):
        digits = value.strip()
        return digits.isascii() and digits.isdecimal() and 0 < int(digits[:20] or "0") <= 10**12
    if isinstance(value, list | tuple | set | frozenset):
        return any(small_id(v) for v in value)
    return False


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value of the argument's kind, or anything at all."""
    return st.one_of(good, good, anything)


refs = st.one_of(
    st.builds(Ref, st.integers(0, SEED_JOBS - 1)), st.builds(JobRef, st.integers(0, 3))
)
ids = st.one_of(refs, refs, anything.filter(lambda v: not small_id(v)))
id_lists = st.one_of(ids, st.lists(ids, max_size=3))
queues = either(st.sampled_from(["default", "q1", "ctxq"]))
names = either(st.sampled_from(["t", "fetch"]))
payloads = st.one_of(st.none(), st.dictionaries(texts, json_values, max_size=4), deep, anything)
statuses = either(st.sampled_from(["completed", "failed", "pending", "running", "cancelled"]))
seconds = either(st.one_of(st.integers(0, 100), st.floats(0, 100), st.timedeltas()))
bools = either(st.booleans())
sched_refs = either(st.sampled_from(["sched", "nosuch"])).filter(lambda v: not small_id(v))
limits = either(st.integers(1, 10))

JOB_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "queue": queues,
    "priority": either(st.sampled_from([1, 5, "high", "low"])),
    "delay": seconds,
    "run_at": either(times),
    "attempts": limits,
    "backoff": either(st.sampled_from([{"kind": "fixed", "delay": 1.0}, wizd.Backoff()])),
    "timeout": seconds,
    "ttl": seconds,
    "tags": either(st.lists(texts, max_size=3)),
    "context": either(st.dictionaries(texts, json_values, max_size=3)),
    "depends_on": id_lists,
    "parent": ids,
    "on_dependency_failure": either(st.sampled_from(["fail", "cancel", "ignore"])),
    "on_child_failure": either(st.sampled_from(["continue", "fail", "cancel"])),
    "unique_key": either(texts),
    "unique_for": seconds,
    "unique_states": either(st.lists(statuses, max_size=2)),
    "on_conflict": either(st.sampled_from(["return", "raise", "replace"])),
    "concurrency_key": either(st.sampled_from(["k1", "k2"])),
    "nosuchoption": anything,
}
JOB_OPTIONS["children"] = either(
    st.lists(
        st.fixed_dictionaries(
            {"name": names}, optional={"payload": payloads, "tags": JOB_OPTIONS["tags"]}
        ),
        max_size=2,
    )
)
SCHEDULE_OPTIONS = {k: v for k, v in JOB_OPTIONS.items() if k not in ("queue", "delay", "run_at")}
items = either(
    st.lists(
        st.fixed_dictionaries(
            {"name": names},
            optional={
                "payload": payloads,
                "queue": queues,
                "tags": JOB_OPTIONS["tags"],
                "depends_on": either(st.lists(st.integers(0, 2), max_size=2)),
                "nosuchkey": anything,
            },
        ),
        max_size=3,
    )
)

# method: (positional argument strategies, keyword argument strategies)
ID = ([ids], {})
QUEUE = ([queues], {})
NONE: tuple[list[Any], dict[str, Any]] = ([], {})
METHODS: dict[str, tuple[list[st.SearchStrategy[Any]], dict[str, st.SearchStrategy[Any]]]] = {
    "enqueue": ([names, payloads], JOB_OPTIONS),
    # build's options are keyword arguments (an unknown one is Python's TypeError); enqueue
    # takes **options and names an unknown one.
    "build": ([names, payloads], {k: v for k, v in JOB_OPTIONS.items() if k != "nosuchoption"}),
    "enqueue_many": ([items], {}),
    "enqueue_batch": ([items], {}),
    "batch": ([either(texts)], {}),
    "add_dependency": ([ids, id_lists], {}),
    "remove_dependency": ([ids, id_lists], {}),
    "dependencies": ID,
    "dependents": ID,
    "children": ID,
    "tree": ID,
    "create_distributed": (
        [either(texts), either(st.lists(texts, min_size=1, max_size=3))],
        {
            "queue": queues,
            "ttl": seconds,
            "name": names,
            "subtask_name": names,
            "dispatch": bools,
            "priority": JOB_OPTIONS["priority"],
            "attempts": limits,
            "tags": JOB_OPTIONS["tags"],
        },
    ),
    "dispatch": ID,
    "subtasks": ID,
    "subtask": ([ids, either(st.sampled_from(["sub_1", "sub_9"]))], {}),
    "consolidate": ID,
    "get": ID,
    "list": (
        [],
        {
            "queue": queues,
            "status": either(st.one_of(statuses, st.lists(statuses, max_size=2))),
            "name": names,
            "tags": JOB_OPTIONS["tags"],
            "created_after": either(times),
            "created_before": either(times),
            "parent": ids,
            "batch_id": either(texts),
            "kind": either(st.one_of(st.sampled_from(["job", "distributed"]), names)),
            "sort": either(st.sampled_from(["id", "priority", "name"])),
            "order": either(st.sampled_from(["asc", "desc"])),
            "limit": limits,
            "offset": either(st.integers(0, 5)),
        },
    ),
    "peek": ([queues], {"n": limits}),
    "counts": ([queues], {}),
    "counts_by_queue": NONE,
    "stats": ([queues], {"window": seconds}),
    "events": ([ids], {"after": either(st.integers(0, 3))}),
    "queues": NONE,
    "workers": NONE,
    "cancel": ([ids, ids], {}),
    "retry": ([ids], {}),
    "kill": ([ids], {"force": bools}),
    "hung": ([seconds], {}),
    "reap_hung": ([seconds], {}),
    "pause": QUEUE,
    "resume": QUEUE,
    "pause_job": ID,
    "resume_job": ID,
    "delete": ([ids], {}),
    "set_defaults": (
        [queues],
        {k: JOB_OPTIONS[k] for k in ("priority", "attempts", "backoff", "timeout", "ttl")},
    ),
    "defaults": QUEUE,
    "set_queue_limits": (
        [queues],
        {"max_running": either(limits), "rate": either(st.just("10/s")), "burst": limits},
    ),
    "queue_limits": QUEUE,
    "all_queue_limits": NONE,
    "set_concurrency_limit": ([either(st.just("k1")), either(st.one_of(st.none(), limits))], {}),
    "concurrency_limits": NONE,
    "schedule": (
        [names, payloads],
        {
            "queue": queues,
            "cron": either(st.sampled_from(["0 9 * * *", "0 0 30 2 *", "* * * * *"])),
            "every": seconds,
            "timezone": either(st.sampled_from(["UTC", "Europe/Lisbon", "../etc", "Nowhere/X"])),
            "catch_up": either(st.sampled_from(["latest", "all", "none"])),
            "key": either(st.sampled_from(["sched", "s2"])),
            "paused": bools,
            **SCHEDULE_OPTIONS,
        },
    ),
    "schedules": NONE,
    "get_schedule": ([sched_refs], {}),
    "unschedule": ([sched_refs], {}),
    "pause_schedule": ([sched_refs], {}),
    "resume_schedule": ([sched_refs], {}),
    "schedule_runs": ([sched_refs], {"limit": limits}),
    "run_schedule": ([sched_refs], {}),
    "fire_schedules": NONE,
    "log": ([ids, either(texts)], {}),
    "cleanup": (
        [seconds],
        {"statuses": either(st.lists(statuses, max_size=2)), "dry_run": bools},
    ),
}
CONTEXT_METHODS = {
    "progress": ([either(st.floats(0, 1))], {"message": either(texts)}),
    "log": ([either(texts)], {}),
    "spawn": ([names, payloads], {k: v for k, v in JOB_OPTIONS.items() if k != "parent"}),
}


@st.composite
def calls(draw: st.DrawFn) -> Call:
    target = draw(st.sampled_from(["q"] * 5 + ["ctx"]))
    table = METHODS if target == "q" else CONTEXT_METHODS
    method = draw(st.sampled_from(sorted(table)))
    positional, keywords = table[method]
    keywords = keywords or {"_": st.nothing()}  # sampled_from needs one key; never chosen
    args = tuple(draw(s) for s in positional)  # leaving one out is Python's TypeError
    chosen = draw(st.lists(st.sampled_from(sorted(keywords)), unique=True, max_size=4))
    kwargs = {k: draw(keywords[k]) for k in chosen}
    return Call(target, method, args, kwargs)


# -- the two backends -----------------------------------------------------------------------
class Backend:
    """An open blocking client, the jobs made at the start, and a running job's context."""

    def __init__(self, q: Any) -> None:
        self.q = q
        self.seeds = [q.enqueue("t", {"n": i}, queue="default").id for i in range(SEED_JOBS - 1)]
        self.seeds.append(q.create_distributed("p", ["a", "b"]).id)
        q.schedule("t", every=60, key="sched")
        running = q.enqueue("t", queue="ctxq")
        portal = q._portal
        claimed = portal.call(q._queue.store.claim, "ctxq", "fuzz-worker", 1)
        assert [j.id for j in claimed] == [running.id]
        self.ctx = JobContext(claimed[0], q._queue, "fuzz-worker")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Ref):
            return self.seeds[value.index]
        if isinstance(value, JobRef):
            return self.q.get(self.seeds[value.index])
        if isinstance(value, Deep):
            return nested(value.depth)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def outcome(self, call: Call) -> str:
        """ "ok", or the name of the WizdError class raised; any other exception escapes."""
        try:
            self.call(call)
        except WizdError as exc:
            return type(exc).__name__
        return "ok"

    def call(self, call: Call) -> None:
        args = [self.resolve(a) for a in call.args]  # a Job deleted meanwhile: JobNotFound
        kwargs = {k: self.resolve(v) for k, v in call.kwargs.items()}
        if call.target == "q":
            fn: Callable[..., Any] = getattr(self.q, call.method)
        else:
            method = getattr(self.ctx, call.method)

            def fn(*a: Any, **kw: Any) -> Any:
                return self.q._portal.call(lambda: method(*a, **kw))

        fn(*args, **kwargs)


@pytest.fixture
def backends(store_url: str, postgres_url: str) -> Iterator[tuple[Backend, Backend]]:
    clock = FakeClock()
    with (
        wizd.connect_sync(store_url, clock=clock) as lite,
        wizd.connect_sync(postgres_url, clock=clock) as pg,
    ):
        yield Backend(lite), Backend(pg)


def test_every_api_call_succeeds_or_raises_a_wizd_error_alike_on_both_backends(
    backends: tuple[Backend, Backend],
) -> None:
    lite, pg = backends

    @settings(PROFILE)
    @given(call=calls())
    def one_call(call: Call) -> None:
        on_sqlite = lite.outcome(call)
        on_postgres = pg.outcome(call)
        assert on_sqlite == on_postgres, f"{call!r}: SQLite {on_sqlite}, PostgreSQL {on_postgres}"

    one_call()
