"""What every benchmark job does, in every system: write one line saying when it ran.

A job numbered i appends `i started ended` (Unix seconds) to a file of its own process in the
folder named by the BENCH_STAMPS environment variable, with one O_APPEND write, so lines of
concurrent jobs never interleave. The harness reads these files from outside: they tell it
which jobs ran (and how often), when each started (pickup latency) and when the last ended.
This module is imported by the worker processes, so it imports nothing but the stdlib.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time

STAMPS = "BENCH_STAMPS"
SLEEP = 0.001  # the "1 ms job"


@functools.cache
def _stamp_file(pid: int) -> int:
    folder = os.environ[STAMPS]
    return os.open(os.path.join(folder, f"{pid}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def record(i: int, started: float) -> None:
    """Job i started at `started` and ends now. Keyed by pid: forked workers get their own."""
    os.write(_stamp_file(os.getpid()), f"{i} {started:.6f} {time.time():.6f}\n".encode())


def noop(i: int) -> None:
    record(i, time.time())


def sleep(i: int) -> None:
    """The 1 ms job of systems whose tasks are synchronous functions."""
    started = time.time()
    time.sleep(SLEEP)
    record(i, started)


async def noop_async(i: int) -> None:
    record(i, time.time())


async def sleep_async(i: int) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    record(i, started)
