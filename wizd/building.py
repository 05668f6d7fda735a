"""A job's arguments checked into a NewJob: what Queue.build, enqueue and every method that
makes jobs share. Bad input raises InvalidJob naming the argument; nothing is written here.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from wizd import arguments as arg
from wizd.arguments import Seconds, epoch, job_id, seconds
from wizd.checks import SizeLimits, shorten
from wizd.errors import InvalidJob
from wizd.model import (
    CONFLICT_POLICIES,
    MAX_CHILDREN,
    NOT_FINAL,
    Backoff,
    Job,
    JobStatus,
    NewJob,
    as_object,
    as_tags,
    check_attempts,
    check_identifier,
    check_positive,
    check_unique_key,
    encode_json,
    encode_payload,
    new_job,
    parse_priority,
)
from wizd.store import Store

DEFAULT_QUEUE = "default"
DEPENDENCY_POLICIES = ("fail", "cancel", "ignore")
CHILD_POLICIES = ("continue", "fail", "cancel")
Jobs = list[Job]
Ids = list[int]


class EnqueueOptions(TypedDict, total=False):
    """The options of one job (Queue.enqueue's keyword arguments, an enqueue_many item)."""

    queue: str
    priority: int | str | None
    delay: Seconds | None
    run_at: datetime | float | None
    attempts: int | None
    backoff: Backoff | Mapping[str, Any] | None
    timeout: Seconds | None
    ttl: Seconds | None
    tags: Sequence[str] | None
    context: Mapping[str, Any] | None
    depends_on: Iterable[int | Job] | None
    parent: int | Job | None
    on_dependency_failure: str
    on_child_failure: str
    children: Sequence[Mapping[str, Any]] | None
    unique_key: str | None
    unique_for: Seconds | None
    unique_states: Iterable[str | JobStatus] | None
    on_conflict: str | None
    concurrency_key: str | None


# The keys an item of enqueue_many (or of children=) may carry: enqueue's arguments.
ENQUEUE_KEYS = ("name", "payload", *EnqueueOptions.__annotations__)
_ENQUEUE_KEY_SET = frozenset(ENQUEUE_KEYS)
_PLAIN_KEYS = frozenset({"queue"})  # options of a job that Queue._build_plain builds
_PUBLIC_OPTIONS = tuple(EnqueueOptions.__annotations__)
# build's keyword arguments: the public options and those set by enqueue_batch and friends.
_OPTION_KEYS = frozenset(_PUBLIC_OPTIONS) | {
    "depends_on_index",
    "batch_id",
    "kind",
    "start_waiting_children",
    "start_paused",
}
KINDS = ("job", "distributed")
MAX_BATCH_ID = 200


class JobBuilder:
    """Builds validated jobs from the client's arguments (a base of wizd.Queue)."""

    store: Store
    limits: SizeLimits
    clock: Callable[[], float]

    def build(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int | str | None = None,
        delay: Seconds | None = None,
        run_at: datetime | float | None = None,
        attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout: Seconds | None = None,
        ttl: Seconds | None = None,
        tags: Sequence[str] | None = None,
        context: Mapping[str, Any] | None = None,
        depends_on: Iterable[int | Job] | None = None,
        parent: int | Job | None = None,
        on_dependency_failure: str = "fail",
        on_child_failure: str = "continue",
        depends_on_index: Sequence[int] = (),
        batch_id: str | None = None,
        start_waiting_children: bool = False,
        children: Sequence[Mapping[str, Any]] | None = None,
        start_paused: bool = False,
        kind: str = "job",
        unique_key: str | None = None,
        unique_for: Seconds | None = None,
        unique_states: Iterable[str | JobStatus] | None = None,
        on_conflict: str | None = None,
        concurrency_key: str | None = None,
    ) -> NewJob:
        """Validate one job's arguments into a NewJob. Raises InvalidJob; writes nothing."""
        if delay is not None and run_at is not None:
            raise InvalidJob("delay", "give delay or run_at, not both")
        unique = self._unique(unique_key, unique_for, unique_states, on_conflict)
        if isinstance(backoff, Mapping):
            backoff = Backoff.from_dict(backoff)
        elif backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidJob("backoff", f"must be a wizd.Backoff, got {shorten(backoff)}")
        arg.one_of("on_dependency_failure", on_dependency_failure, DEPENDENCY_POLICIES)
        arg.one_of("on_child_failure", on_child_failure, CHILD_POLICIES)
        arg.one_of("kind", kind, KINDS)
        timeout_s = seconds("timeout", timeout)
        ttl_s = seconds("ttl", ttl)
        built_children: tuple[NewJob, ...] = ()
        if children is not None:
            if isinstance(children, Mapping) or not isinstance(children, Sequence):
                raise InvalidJob("children", "must be a list of job dicts")
            if not children:
                raise InvalidJob("children", "give at least one child, or leave children out")
            if len(children) > MAX_CHILDREN:
                raise InvalidJob(
                    "children", f"{len(children)} children; the limit is {MAX_CHILDREN}"
                )
            built_children = tuple(
                self._build_item(
                    i, {"queue": queue, **arg.options_of(f"children[{i}]", item)}, "children"
                )
                for i, item in enumerate(children)
            )
        return new_job(
            queue=check_identifier("queue", queue),
            name=check_identifier("name", name),
            payload=encode_payload({} if payload is None else payload, self.limits.payload),
            priority=None if priority is None else parse_priority(priority),
            max_attempts=None if attempts is None else check_attempts(attempts),
            backoff=backoff,
            timeout=check_positive("timeout", timeout_s),
            run_at=epoch("run_at", run_at),
            delay=seconds("delay", delay) or 0.0,
            ttl=check_positive("ttl", ttl_s),
            tags=as_tags(tags, self.limits.tags),
            context=None
            if context is None
            else encode_json(as_object("context", context), "context", self.limits.context),
            parent_id=None if parent is None else job_id(parent, "parent"),
            depends_on=tuple(arg.job_ids(depends_on, "depends_on", empty=True)),
            depends_on_index=arg.indexes("depends_on_index", depends_on_index),
            batch_id=arg.text("batch_id", batch_id, MAX_BATCH_ID),
            on_dependency_failure=on_dependency_failure,
            on_child_failure=on_child_failure,
            start_waiting_children=arg.flag("start_waiting_children", start_waiting_children),
            start_paused=arg.flag("start_paused", start_paused),
            kind=kind,
            children=built_children,
            concurrency_key=(
                None
                if concurrency_key is None
                else check_identifier("concurrency_key", concurrency_key)
            ),
            **unique,
        )

    def _build_any(
        self, name: str, payload: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> NewJob:
        """build(name, payload, **options), by _build_plain when only a queue is given."""
        if options.keys() <= _PLAIN_KEYS:
            return self._build_plain(name, payload, options.get("queue", DEFAULT_QUEUE))
        if not _OPTION_KEYS.issuperset(options):
            unknown = sorted(map(str, set(options) - _OPTION_KEYS))
            raise InvalidJob(unknown[0], f"unknown option; known: {', '.join(_PUBLIC_OPTIONS)}")
        return self.build(name, payload, **options)

    def _build_plain(self, name: str, payload: Mapping[str, Any] | None, queue: str) -> NewJob:
        """build(name, payload, queue=queue) with every other option left out, without
        looking at each of them (the usual item of a bulk enqueue)."""
        return new_job(
            queue=check_identifier("queue", queue),
            name=check_identifier("name", name),
            payload=encode_payload({} if payload is None else payload, self.limits.payload),
            priority=None,
            max_attempts=None,
            backoff=None,
            timeout=None,
            run_at=None,
            delay=0.0,
            ttl=None,
        )

    @staticmethod
    def _unique(
        key: str | None,
        period: Seconds | None,
        states: Iterable[str | JobStatus] | None,
        on_conflict: str | None,
    ) -> dict[str, Any]:
        """NewJob's unique_* fields, validated (none without a key)."""
        if key is None:
            for name, value in (
                ("unique_for", period),
                ("unique_states", states),
                ("on_conflict", on_conflict),
            ):
                if value is not None:
                    raise InvalidJob(name, "applies to a job with a unique_key: give one")
            return {}
        held_for = check_positive("unique_for", seconds("unique_for", period))
        chosen = NOT_FINAL if states is None else arg.unique_states_of(states)
        if not chosen and held_for is None:
            raise InvalidJob(
                "unique_states", "is empty and no unique_for is given: the key would never hold"
            )
        policy = "return" if on_conflict is None else on_conflict
        if policy not in CONFLICT_POLICIES:
            raise InvalidJob(
                "on_conflict",
                f"must be one of {', '.join(CONFLICT_POLICIES)}, got {shorten(on_conflict)}",
            )
        return {
            "unique_key": check_unique_key(key),
            "unique_for": held_for,
            "unique_states": chosen,
            "on_conflict": policy,
        }

    def _build_item(
        self, index: int, item: Mapping[str, Any], field: str = "items", **extra: Any
    ) -> NewJob:
        if not isinstance(item, Mapping):
            raise InvalidJob(f"{field}[{index}]", f"must be a dict, got {type(item).__name__}")
        if not _ENQUEUE_KEY_SET.issuperset(item):
            unknown = sorted(map(str, set(item) - _ENQUEUE_KEY_SET))
            known = ", ".join(ENQUEUE_KEYS)
            raise InvalidJob(f"{field}[{index}]", f"unknown keys {unknown}; known: {known}")
        if "name" not in item:
            raise InvalidJob(f"{field}[{index}].name", "is required")
        args = dict(item)
        if extra:
            args.update(extra)
        name, payload = args.pop("name"), args.pop("payload", None)
        try:
            return self._build_any(name, payload, args)
        except InvalidJob as exc:
            message = str(exc).split(": ", 1)[-1]
            raise InvalidJob(f"{field}[{index}].{exc.field}", message) from None

    @staticmethod
    def _many(value: int | str | Job | Iterable[int | str | Job]) -> builtins.list[int]:
        return arg.job_ids(value, "depends_on")

    @staticmethod
    def _ids(ids: Sequence[int | str | Job]) -> Ids:
        return arg.job_ids(ids)
