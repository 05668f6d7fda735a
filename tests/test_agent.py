"""Agent: what may be registered as a processor, and how it is told to run."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import wizd


async def agen(ctx: wizd.JobContext) -> AsyncIterator[int]:
    yield 1


def gen(ctx: wizd.JobContext) -> Iterator[int]:
    yield 1


@pytest.mark.parametrize("fn", [agen, gen], ids=["async generator", "generator"])
def test_a_generator_function_is_refused_at_registration(fn: Any) -> None:
    agent = wizd.Agent("researcher")
    with pytest.raises(wizd.InvalidJob, match="generator function: a processor returns"):
        agent.add("stream", fn)
    assert "stream" not in agent.processors


def test_a_processor_that_is_not_callable_is_refused() -> None:
    agent = wizd.Agent("researcher")
    with pytest.raises(wizd.InvalidJob, match="'x' is not callable"):
        agent.add("x", 42)  # type: ignore[arg-type]


async def coro(word: str, ctx: wizd.JobContext) -> str:
    return word


class AsyncCall:
    async def __call__(self, ctx: wizd.JobContext) -> str:
        return "object"


def plain(ctx: wizd.JobContext) -> str:
    return "plain"


@pytest.mark.parametrize(
    ("fn", "is_async"),
    [
        (coro, True),
        (functools.partial(coro, "partial"), True),
        (AsyncCall(), True),
        (plain, False),
        (lambda ctx: coro("lambda", ctx), False),  # its coroutine is awaited by the worker
    ],
    ids=["coroutine function", "partial", "async __call__", "plain", "lambda returning a coro"],
)
def test_how_each_kind_of_processor_is_run(fn: Any, is_async: bool) -> None:
    agent = wizd.Agent("researcher")
    agent.add("p", fn)
    assert agent.is_async("p") is is_async
