"""`wizd logs -f` on jobs that a real daemon runs, on SQLite and PostgreSQL: it watches
the job (Queue.watch, on a client of its own that may write: a watch's lease is a write)
and prints every line of its history as it comes, in order, the lines `wizd logs` lists
afterwards, then exits with the job's outcome. A user who may only read the store (a
read-only SQLite file in a read-only folder; a PostgreSQL role with SELECT alone) gets the
same lines by polling, told so once on stderr.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import wizd
from tests.acceptance.conftest import AGENT, Harness, daemon_env, wait_until, wizd_command
from tests.conftest import PG_SERVER
from tests.test_cli_monitor import DEADLINE, Terminal
from tests.test_store_open import read_only, without_privileges
from tests.test_watching import leases_at

pytestmark = pytest.mark.slow

STEPS = ["search", "read", "write"]
POLLING = "instead of watching it"


class Follower:
    """`wizd logs -f ID` running in another process, its stdout read line by line."""

    def __init__(self, h: Harness, job_id: int, url: str, *, unprivileged: bool = False) -> None:
        self.proc = subprocess.Popen(
            wizd_command("logs", "-f", str(job_id), "--database", url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=daemon_env(),
            cwd=h.dir,
            text=True,
            preexec_fn=without_privileges if unprivileged else None,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def printed(self, text: str) -> None:
        wait_until(lambda: any(text in line for line in self.lines), 20, f"{text!r} printed")

    def end(self) -> tuple[int, str]:
        """Its exit code and what it said on stderr, once it has ended by itself."""
        code = self.proc.wait(60)
        self._reader.join(10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            assert pipe is not None
            pipe.close()


def listing(h: Harness, job_id: int, url: str) -> list[str]:
    """What `wizd logs ID` prints: the job's whole history."""
    done = h.run("logs", str(job_id), "--database", url)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def follow_two_jobs(
    h: Harness, url: str, unprivileged: bool, until_following: Callable[[], object]
) -> list[tuple[wizd.Job, Follower, int, str]]:
    """A job that completes and one that fails, each followed from before it runs."""
    with wizd.connect_sync(str(h.db)) as q:
        ok = q.enqueue("report", {"steps": STEPS}, queue=AGENT)
        bad = q.enqueue("report", {"steps": STEPS, "fail": True}, queue=AGENT, attempts=1)
    followers = [Follower(h, job.id, url, unprivileged=unprivileged) for job in (ok, bad)]
    try:
        for follower in followers:
            follower.printed("enqueued")
        until_following()
        h.start().ready()
        return [(job, f, *f.end()) for job, f in zip((ok, bad), followers, strict=True)]
    finally:
        for follower in followers:
            follower.close()


def check_printed_as_listed(h: Harness, ran: list[tuple[wizd.Job, Follower, int, str]]) -> None:
    """Exit 0 for the completed job, 1 for the failed one; each printed its whole history
    in order (what `wizd logs` lists), then its end."""
    (_, ok_follower, ok_code, _), (_, bad_follower, bad_code, _) = ran
    assert (ok_code, bad_code) == (0, 1), (ok_follower.lines, bad_follower.lines)
    for job, follower, _, _ in ran:
        *lines, end = [line for line in follower.lines if line]
        assert lines == listing(h, job.id, str(h.db)), "\n".join(follower.lines)
        kinds = [line.split()[2] for line in lines]
        reports = ["progress", "log"] * len(STEPS)
        assert kinds[: 2 + len(reports)] == ["enqueued", "claimed", *reports]
        shown = [line.split(maxsplit=5)[5] for line in lines[2 : 2 + len(reports)]]
        assert shown[0::2] == ["33% search", "67% read", "100% write"]
        assert shown[1::2] == [f"done {step}" for step in STEPS]
        assert end.startswith(f"job {job.id} is final: ")
    assert ok_follower.lines[-3].split()[2:] == ["completed", "✓", "completed", "attempt", "1"]
    assert bad_follower.lines[-1].endswith("failed")


@pytest.fixture
def h(store_harness: Harness) -> Harness:
    """Once per store (SQLite, PostgreSQL)."""
    return store_harness


def test_logs_follow_watches_a_daemons_job_and_exits_with_its_outcome(h: Harness) -> None:
    url = str(h.db)
    ran = follow_two_jobs(
        h, url, False, lambda: wait_until(lambda: leases_at(url) == 2, 20, "two leases")
    )
    check_printed_as_listed(h, ran)
    assert [stderr for *_, stderr in ran] == ["", ""]  # watched: no word of polling


@pytest.fixture
def reader_url(h: Harness) -> Iterator[str]:
    """The store's URL for a user who may only read it: on SQLite, a 0444 file in a 0555
    folder (read by a process without root's capabilities; the daemon, as root, still
    writes it); on PostgreSQL, a role with SELECT on wizd's tables alone."""
    if not isinstance(h.db, str):
        shared = h.dir / "shared"
        shared.mkdir()
        h.db = shared / "wizd.db"
        with wizd.connect_sync(str(h.db), file_mode=0o644):
            pass
        read_only(shared)
        yield str(h.db)
        shared.chmod(0o755)
        return
    schema = h.db.rsplit("schema=", 1)[1]
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with wizd.connect_sync(h.db):
        pass
    admin = h.db.split("?")[0]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        c.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    assert h.db.startswith(PG_SERVER)
    yield h.db.replace("//postgres@", f"//{role}@", 1)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP OWNED BY {role}")
        c.execute(f"DROP ROLE {role}")


def test_logs_follow_polls_for_a_user_who_may_only_read_and_prints_the_same(
    h: Harness, reader_url: str
) -> None:
    sqlite = isinstance(h.db, Path)
    ran = follow_two_jobs(h, reader_url, sqlite, lambda: None)
    check_printed_as_listed(h, ran)
    for *_, stderr in ran:
        assert stderr.count(POLLING) == 1, stderr
        assert len(stderr.splitlines()) == 1, stderr
        assert ("may not write" if sqlite else "permission denied") in stderr
    assert leases_at(str(h.db)) == 0  # it never took a lease


def test_logs_follow_on_a_terminal_shows_a_progress_bar_while_the_job_reports(
    harness: Harness,
) -> None:
    with wizd.connect_sync(str(harness.db)) as q:
        job = q.enqueue("report", {"steps": STEPS}, queue=AGENT)
    term = Terminal(harness.db, "logs", "-f", str(job.id))
    try:
        term.read_until("enqueued")
        harness.start().ready()
        text = term.read_until(f"job {job.id} is final")
        assert term.proc.wait(DEADLINE) == 0
    finally:
        term.close()
    assert "━" in text  # the bar, drawn while the job reported progress
    assert "100% write" in text
    assert "instead of watching it" not in text
