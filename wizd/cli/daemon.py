"""Running the daemon: settings, logging, optional daemonizing, signals at the edge."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from wizd.agent import Agent
from wizd.errors import ConfigError
from wizd.hooks import Hooks
from wizd.logging import configure_logging, get_logger
from wizd.settings import Settings
from wizd.supervisor import Supervisor, load_agents, pid_alive
from wizd.systemd import Notifier

EXIT_ABANDONED = 3  # a third signal ended the process with threads of synchronous runs running


def absolute_database(url: str) -> str:
    """A relative SQLite path made absolute (daemonizing changes directory to /)."""
    if "://" in url and not url.startswith("sqlite"):
        return url
    prefix = "sqlite:///" if url.startswith("sqlite:///") else ""
    path = url[len(prefix) :]
    if path == ":memory:" or not path:
        return url
    return prefix + str(Path(path).expanduser().resolve())


async def serve(
    settings: Settings,
    agents: dict[str, Agent],
    *,
    hooks: Hooks | None = None,
    on_ready: Any = None,
    stop: anyio.Event | None = None,
) -> None:
    """Run a Supervisor until SIGTERM/SIGINT or `stop` (graceful). A second signal skips the
    rest of the grace period (running jobs are requeued at once, not charged); a third
    abandons everything (jobs left running are recovered at the next start); with threads
    of synchronous processors still running, it ends the process at once, as SIGKILL would."""
    log = get_logger()
    ready = anyio.Event()  # the store is open and migrated: the API may open it too

    async def when_ready(queue: Any) -> None:
        ready.set()
        if on_ready is not None:
            await on_ready(queue)

    supervisor = Supervisor(
        settings, agents, log=log, notifier=Notifier(), hooks=hooks, on_ready=when_ready
    )
    stop = stop or anyio.Event()
    async with anyio.create_task_group() as tg:

        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                count = 0
                async for signum in received:
                    name = signal.Signals(signum).name
                    count += 1
                    if count == 1:
                        log.info("signal_received", signal=name, action="graceful stop")
                        stop.set()
                    elif count == 2:
                        log.warning("signal_received", signal=name, action="requeue and stop now")
                        stop.set()
                        supervisor.stop_now()
                    else:
                        held = sorted(j for w in supervisor.workers for j in w.in_threads)
                        if held:
                            # A thread cannot be abandoned while the process lives on (its
                            # job would go unheartbeated while it runs): end the process, as
                            # SIGKILL would; the jobs are recovered as after one.
                            log.warning(
                                "signal_received",
                                signal=name,
                                action="exit now, ending the threads of synchronous runs",
                                job_ids=held,
                            )
                            sys.stderr.flush()
                            os._exit(EXIT_ABANDONED)
                        log.warning("signal_received", signal=name, action="abandon and exit")
                        tg.cancel_scope.cancel()

        tg.start_soon(signals)
        if settings.serve_http:
            tg.start_soon(serve_http, settings, ready, stop, log)
        await supervisor.run(stop)
        tg.cancel_scope.cancel()


async def serve_http(settings: Settings, ready: anyio.Event, stop: anyio.Event, log: Any) -> None:
    """The HTTP API beside the workers (`serve_http = true`), on a client of its own,
    once the supervisor has opened (and migrated) the store."""
    from wizd.cli.serve import serve_api_on

    await ready.wait()
    await serve_api_on(settings, stop, log)


def run_daemon(settings: Settings) -> None:
    """The `wizd --agent … --concurrency …` command."""
    configure_logging(settings.log_format, settings.log_level)
    importable_from_cwd()
    agents = load_agents(settings)  # imports --app modules before any change of directory
    if settings.serve_http:
        from wizd.cli.serve import api_server

        api_server()  # a missing extra is one line before anything starts
    settings = settings.model_copy(update={"database": absolute_database(settings.database)})
    if settings.daemonize:
        _daemonize(settings)
    elif settings.pidfile:
        _claim_pidfile(settings.pidfile)
    try:
        anyio.run(serve, settings, agents)
    except BaseExceptionGroup as group:
        raise single_error(group) from None
    finally:
        if settings.pidfile and not settings.daemonize:
            Path(settings.pidfile).unlink(missing_ok=True)


def importable_from_cwd() -> None:
    """--app modules are found in the working directory, as `python -m` and Celery find them
    (the console script's sys.path starts with its own bin directory instead)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested task-group wrappers (else the group itself)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _check_pidfile_folder(pidfile: Path) -> None:
    folder = pidfile.parent
    if not folder.is_dir():
        raise ConfigError(f"pidfile: folder {folder} of {pidfile} does not exist")


def _claim_pidfile(path: str) -> None:
    pidfile = Path(path)
    _check_pidfile_folder(pidfile)
    try:
        if pidfile.exists():
            text = pidfile.read_text(errors="replace").strip()
            if text.isdigit() and pid_alive(int(text)) and int(text) != os.getpid():
                raise ConfigError(
                    f"pidfile: {pidfile} names a running process ({text}); not starting"
                )
        pidfile.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"pidfile: cannot write {pidfile}: {exc.strerror}") from None


def _daemonize(settings: Settings) -> None:
    import daemon
    import daemon.pidfile

    if not settings.pidfile:
        raise ConfigError("pidfile: --daemonize needs --pidfile FILE")
    path = str(Path(settings.pidfile).resolve())
    existing = Path(path)
    _check_pidfile_folder(existing)
    if existing.exists():
        text = existing.read_text().strip()
        if text.isdigit() and pid_alive(int(text)):
            raise ConfigError(f"pidfile: {path} names a running process ({text}); not starting")
        existing.unlink()  # stale
    context = daemon.DaemonContext(
        pidfile=daemon.pidfile.PIDLockFile(path),
        working_directory="/",
        umask=0o027,
        stdout=sys.stdout,
        stderr=sys.stderr,
        signal_map={},  # signals are handled by the daemon's own event loop
    )
    context.open()
