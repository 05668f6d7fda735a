"""The command line never shows a traceback: driven with generated text, numbers and JSON
(ids, -q, --tag, --payload, filters, limits, durations, names) on SQLite and on PostgreSQL,
every command either succeeds or exits non-zero with one clean line on stderr.

The commands run in this process through wizd.cli.main (tests.cli_runner), as the console
script runs them; hypothesis and async fixtures do not mix, so the test is synchronous and
each command runs its own event loop. Arguments never hold a NUL (an argv cannot) but do hold
lone surrogates (what Python makes of argv bytes that are not UTF-8)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wizd
from tests.cli_runner import Ran, invoke

AGENTS = ("researcher", "writer")

# Text an operator may type: anything but NUL, with the awkward characters made likely.
AWKWARD = st.sampled_from(["\udcff", "\ud800", "-", "1", " ", "é", "[", "{", "\n", "%", "'"])
PLAIN = st.text(st.characters(exclude_characters="\x00"), max_size=30)  # no surrogates
TYPED = st.one_of(
    PLAIN,
    st.lists(st.one_of(st.characters(exclude_characters="\x00"), AWKWARD), max_size=30).map(
        "".join
    ),
)
NUMBER = st.one_of(
    st.integers(-5, 50),
    st.integers(),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 10**20, -(2**63) - 1]),
).map(str)
NUMBERISH = st.one_of(NUMBER, TYPED, st.floats().map(str))
LIMIT = NUMBERISH
DURATION = st.one_of(
    st.tuples(NUMBER, st.sampled_from(["", "s", "m", "h", "d", "w"])).map("".join), NUMBERISH
)
NAME = st.one_of(st.sampled_from(AGENTS), TYPED)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),  # JSON text may hold NUL and lone surrogates as \u escapes
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
DEEP = st.integers(1, 20_000).map(lambda n: "[" * n + "]" * n)
TOO_DEEP = "[" * 3000 + "]" * 3000  # refused by the command line's own JSON parsing
PAYLOAD = st.one_of(
    st.dictionaries(st.text(), JSON_VALUE, max_size=4).map(json.dumps),
    JSON_VALUE.map(json.dumps),
    DEEP.map(lambda deep: '{"a": ' + deep + "}"),
    st.just('{"a": ' + TOO_DEEP + "}"),
    st.sampled_from(['{"n": 1e400}', '{"n": NaN}', '{"n": 99999999999999999999999}']),
    TYPED,
)


def with_flag(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """`flag VALUE`, or nothing."""
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]))


def repeated(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(values, max_size=3).map(lambda vs: [a for v in vs for a in (flag, v)])


def joined(*parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*parts).map(lambda lists: [a for part in lists for a in part])


CREATE = joined(
    st.just(["create"]),
    NAME.map(lambda a: ["-a", a]),
    NAME.map(lambda t: ["-t", t]),
    st.one_of(st.just([]), TYPED.map(lambda q: ["-q", q]), PAYLOAD.map(lambda p: ["--payload", p])),
    repeated("--tag", TYPED),
    with_flag("--priority", NUMBERISH),
    with_flag("--attempts", NUMBER),
    with_flag("--delay", DURATION),
    with_flag("--timeout", DURATION),
    with_flag("--ttl", DURATION),
    repeated("--depends-on", NUMBER),
    with_flag("--parent", NUMBER),
    with_flag("--unique-key", TYPED),
    with_flag("--concurrency-key", TYPED),
)
JOBS = joined(
    st.just(["jobs"]),
    repeated("-s", st.one_of(st.sampled_from(["failed", "hung", "active", "pending"]), TYPED)),
    with_flag("-a", NAME),
    with_flag("-n", NAME),
    repeated("--tag", TYPED),
    with_flag("--since", DURATION),
    with_flag("--limit", NUMBER),
)
ON_IDS = st.tuples(
    st.sampled_from(["info", "logs", "tree", "kill", "cancel", "retry", "delete"]),
    st.lists(NUMBERISH, min_size=1, max_size=3),
).map(lambda t: [t[0], *(t[1] if t[0] in ("cancel", "retry", "delete") else t[1][:1])])
ON_QUEUES = st.one_of(
    joined(st.just(["peek"]), NAME.map(lambda a: [a]), with_flag("-n", NUMBER)),
    joined(st.just(["stats"]), NAME.map(lambda a: [a]), with_flag("--window", DURATION)),
    joined(st.sampled_from([["pause"], ["resume"], ["queue", "rm"]]), NAME.map(lambda a: [a])),
    joined(st.just(["pause", "--create"]), NAME.map(lambda a: [a])),
    joined(st.just(["cleanup", "--dry-run"]), with_flag("-d", DURATION), repeated("-s", TYPED)),
    joined(st.just(["hung"]), with_flag("--older-than", DURATION)),
    joined(
        st.just(["schedule", "add"]),
        NAME.map(lambda a: ["-a", a]),
        NAME.map(lambda t: ["-t", t]),
        st.one_of(
            TYPED.map(lambda c: ["--cron", c]),
            st.sampled_from(["0 0 30 2 *", "0 0 31 4 *", "*/0 * * * *"]).map(
                lambda c: ["--cron", c]
            ),
            DURATION.map(lambda e: ["--every", e]),
        ),
        with_flag("--timezone", TYPED),
    ),
    joined(
        st.sampled_from([["schedule", "rm"], ["schedule", "runs"]]), NUMBERISH.map(lambda s: [s])
    ),
    joined(st.just(["job", "subtasks"]), NUMBERISH.map(lambda s: [s])),
    joined(st.just(["queue", "limit"]), NAME.map(lambda a: [a]), with_flag("--max-running", LIMIT)),
)
COMMAND = st.one_of(CREATE, JOBS, ON_IDS, ON_QUEUES)


def check(ran: Ran) -> None:
    """Success, or a clean refusal: a non-zero exit, no exception out of main(), one line."""
    assert ran.error is None, str(ran)
    assert "Traceback" not in ran.err, str(ran)
    if ran.code != 0:
        lines = ran.err.strip().splitlines()
        usage = ran.code == 2 and any(line.startswith("Error: ") for line in lines)
        assert usage or len(lines) == 1, str(ran)  # click's usage errors print their usage


@pytest.fixture(params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    for key in list(os.environ):
        if key.startswith("WIZD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    url: str = (
        str(tmp_path / "wizd.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with wizd.connect_sync(url) as q:  # made once; a few jobs for the ids to find
        first = q.enqueue("research", {"query": "x"}, queue=AGENTS[0], tags=["t"])
        q.enqueue("draft", {}, queue=AGENTS[1], depends_on=[first.id])
    return url


@settings(
    max_examples=int(os.environ.get("WIZD_TEST_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=COMMAND, as_json=st.booleans())
def test_every_command_succeeds_or_refuses_in_one_line(
    database: str, command: list[str], as_json: bool
) -> None:
    args: list[Any] = ["--database", database, *command]
    if as_json and command[0] in ("jobs", "info", "create", "peek", "stats", "hung", "cleanup"):
        args.append("--json")
    check(invoke(args))


def seeded(url: str) -> str:
    with wizd.connect_sync(url) as q:
        first = q.enqueue("research", {"query": "x"}, queue=AGENTS[0], tags=["t"])
        q.enqueue("draft", {}, queue=AGENTS[1], depends_on=[first.id])
    return url


@pytest.fixture
def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> tuple[str, str]:
    """A SQLite file and a PostgreSQL schema holding the same jobs under the same ids."""
    for key in list(os.environ):
        if key.startswith("WIZD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return seeded(str(tmp_path / "wizd.db")), seeded(postgres_url)


@settings(
    max_examples=int(os.environ.get("WIZD_TEST_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=COMMAND)
def test_sqlite_and_postgresql_answer_alike(both: tuple[str, str], command: list[str]) -> None:
    """The same command on the same jobs succeeds on both backends or fails on both, with
    the same first words (the field named): the backends agree on bad input (item 21)."""
    answers = []
    for url in both:
        ran = invoke(["--database", url, *command])
        check(ran)
        words = ran.err.split(":")[:2] if ran.code else []
        answers.append((ran.code, words))
    assert answers[0] == answers[1], command
