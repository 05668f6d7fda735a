"""The `wizd` command: without a subcommand it runs the daemon; subcommands operate on jobs."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

import click

from wizd import __version__
from wizd.errors import ConfigError, WizdError
from wizd.settings import load_settings

EX_SOFTWARE = 70  # sysexits.h: an internal error
NEGATIVE_NUMBER = re.compile(r"-\d+(\.\d*)?")
DAEMON_HELP = """\
wizd: a durable job queue and worker daemon for AI agents.

Without a command, runs the worker daemon: for example
`wizd --agent researcher --concurrency 3 --app myagents:researcher`.
Settings come from these flags, then WIZD_* environment variables, then the TOML file
(--config, else /etc/wizd/wizd.toml or ./wizd.toml), then defaults. --app modules are
imported from the working directory first.
"""


# Each subcommand, by name: the module that defines it and its name there. A module is
# imported only when its command runs (or `wizd --help` lists them all), so the daemon's
# start does not pay for rich tables, the demo or the other commands' code.
COMMANDS = {
    "demo": "wizd.cli.demo:demo",
    "jobs": "wizd.cli.ops:jobs",
    "info": "wizd.cli.ops:info",
    "logs": "wizd.cli.ops:logs",
    "create": "wizd.cli.ops:create",
    "wait": "wizd.cli.waits:wait",
    "signal": "wizd.cli.signals:signal",
    "cancel": "wizd.cli.ops:cancel",
    "kill": "wizd.cli.ops:kill",
    "retry": "wizd.cli.ops:retry",
    "delete": "wizd.cli.ops:delete",
    "tree": "wizd.cli.ops:tree",
    "status": "wizd.cli.queues:status",
    "pause": "wizd.cli.queues:pause",
    "resume": "wizd.cli.queues:resume",
    "peek": "wizd.cli.queues:peek",
    "stats": "wizd.cli.queues:stats",
    "hung": "wizd.cli.queues:hung",
    "cleanup": "wizd.cli.queues:cleanup",
    "agents": "wizd.cli.queues:agents",
    "schedule": "wizd.cli.schedules:schedule",
    "queue": "wizd.cli.limits:queue",
    "job": "wizd.cli.distributed:job",
    "monitor": "wizd.cli.monitor:monitor",
    "token": "wizd.cli.tokens:token",
    "serve": "wizd.cli.serve:serve",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when looked up (click's documented
    lazy-loading pattern); listed in name order, as click lists a group's commands."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.lazy, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = self.lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command), f"{self.lazy[cmd_name]} is not a command"
        return command


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    invoke_without_command=True,
    help=DAEMON_HELP,
    context_settings={"max_content_width": 100},
)
@click.option(
    "--agent",
    "-a",
    multiple=True,
    help="Queue to serve (repeatable); default: every agent with processors.",
)
@click.option(
    "--concurrency",
    "-c",
    type=int,
    help="Jobs run at once per queue [1]; beats the file's [agents.X].",
)
@click.option("--app", multiple=True, help="Python processors: module:agent (repeatable).")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file."
)
@click.option(
    "--database",
    "-d",
    help="SQLite path, sqlite:///relative.db, sqlite:////absolute.db or postgresql://… "
    "[wizd.db]; env WIZD_DATABASE.",
)
@click.option("--poll-interval", type=float, help="Seconds between polls when idle [1].")
@click.option("--heartbeat-interval", type=float, help="Seconds between heartbeats [30].")
@click.option("--hung-timeout", type=float, help="Seconds of silence before a job is hung [300].")
@click.option("--shutdown-grace", type=float, help="Seconds running jobs get on SIGTERM [30].")
@click.option("--metrics-host", help="Metrics listen address [127.0.0.1].")
@click.option(
    "--metrics-port", type=int, help="Metrics port, 0 = off [9464, or the next free one]."
)
@click.option(
    "--log-format", type=click.Choice(["auto", "json", "console"]), help="Log format [auto]."
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[info]"
)
@click.option(
    "--daemonize/--no-daemonize", default=None, help="Detach into the background (needs --pidfile)."
)
@click.option("--pidfile", type=click.Path(dir_okay=False), help="Write the daemon's pid here.")
@click.version_option(__version__, prog_name="wizd")
@click.pass_context
def cli(ctx: click.Context, /, config_file: str | None, **flags: Any) -> None:
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file
    ctx.obj["flags"] = flags
    if ctx.invoked_subcommand is not None:
        return
    from wizd.cli.daemon import run_daemon

    settings = load_settings(config_file, **flags)
    run_daemon(settings)


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """The console script: one line on stderr and a non-zero exit for every refusal."""
    args = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(args):
        if not is_utf8(arg):  # bytes that are not UTF-8 reach Python as lone surrogates
            after = args[i - 1] if i and args[i - 1].startswith("-") else None
            where = f"the value of {after}" if after else f"argument {i + 1}"
            click.echo(f"wizd: {where}: {arg!a} is not UTF-8 text", err=True)
            sys.exit(2)
    try:
        code = cli(args=args, prog_name="wizd", standalone_mode=False)
        if isinstance(code, int) and code != 0:  # click.exceptions.Exit(code)
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.NoSuchOption as exc:
        if NEGATIVE_NUMBER.fullmatch(exc.option_name):  # `wizd info -1`: not an option
            command = exc.ctx.command_path if exc.ctx else "wizd"
            click.echo(
                f"{command}: {exc.option_name} is not an id: job and schedule ids are "
                "positive integers",
                err=True,
            )
            sys.exit(2)
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"wizd: {exc}", err=True)
        sys.exit(2)
    except WizdError as exc:
        click.echo(f"wizd: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("wizd: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line for the user, the traceback on request
        if os.environ.get("WIZD_DEBUG"):
            raise
        click.echo(
            f"wizd: unexpected {type(exc).__name__}: {exc} (a bug in wizd; run again with "
            "WIZD_DEBUG=1 to see where)",
            err=True,
        )
        sys.exit(EX_SOFTWARE)
