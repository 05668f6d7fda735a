"""The CLI's subcommands are loaded only when they run: the daemon's start (and `import
wizd.cli`) does not pay for tables, the demo or the other commands, while `wizd --help` still
lists every command with its short help and `wizd CMD --help` works."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from tests.cli_runner import invoke
from wizd.cli import COMMANDS, cli

# Modules only subcommands need; none may be loaded on the daemon's path.
LAZY = [
    *sorted({spec.partition(":")[0] for spec in COMMANDS.values()}),
    "wizd.cli.follow",
    "wizd.cli.options",
    "wizd.cli.render",
    "wizd.cli.session",
    "wizd.metrics",  # only with metrics on (metrics_port 0 here)
    "prometheus_client",
    "rich.live",
    "rich.progress",
]


def loaded_after(code: str) -> list[str]:
    """The LAZY modules a fresh interpreter holds after running `code`."""
    check = f"{code}\nimport sys\nprint(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_importing_the_cli_and_the_daemon_loads_no_subcommand_module() -> None:
    assert loaded_after("import wizd.cli, wizd.cli.daemon") == []


def test_the_daemon_command_loads_no_subcommand_module() -> None:
    code = (
        "import wizd.cli.daemon as daemon\n"
        "from wizd.cli import main\n"
        "daemon.run_daemon = lambda settings: None  # the daemon itself is not run\n"
        "main(['--agent', 'research', '--metrics-port', '0'])\n"
        "from wizd.supervisor import Supervisor\n"
        "from wizd.agent import Agent\n"
        "from wizd.settings import Settings\n"
        "agent = Agent('research')\n"
        "agent.add('job', lambda ctx: None)\n"
        "settings = Settings(agent=['research'], metrics_port=0, _env_file=None)\n"
        "Supervisor(settings, {'research': agent}, log=daemon.get_logger())\n"
    )
    assert loaded_after(code) == []


def test_a_subcommand_loads_its_module_when_it_runs() -> None:
    assert "wizd.cli.schedules" in loaded_after(
        "from wizd.cli import main\nmain(['schedule', '--help'])"
    )


def test_help_lists_every_command_with_its_short_help() -> None:
    ran = invoke(["--help"])
    assert ran.code == 0, ran
    listed = ran.out.split("Commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    assert names == sorted(COMMANDS)
    ctx = click.Context(cli, info_name="wizd")
    for line, name in zip(listed, names, strict=True):
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.name == name
        shown = line.split(None, 1)[1].removesuffix("...")
        assert shown, line
        assert command.get_short_help_str(limit=200).startswith(shown), line


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_its_own_help(name: str) -> None:
    ran = invoke([name, "--help"])
    assert ran.code == 0, ran
    assert ran.out.startswith(f"Usage: wizd {name} ")


def test_queue_group_keeps_its_rm_command() -> None:
    ran = invoke(["queue", "--help"])
    assert ran.code == 0, ran
    assert {"limit", "limits", "concurrency", "rm"} <= {
        line.split()[0] for line in ran.out.split("Commands:\n", 1)[1].splitlines() if line
    }
