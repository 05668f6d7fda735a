"""Settings precedence, through the real command line: flags > WIZD_* environment > the TOML
file > defaults, for every daemon flag, every other setting the file and the environment
both take, and an agent's own concurrency against the global one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import pytest

import wizd
import wizd.cli.daemon
from tests.cli_runner import invoke
from wizd.cli import cli
from wizd.settings import Settings

SKIPPED_OPTIONS = {"config_file", "version", "help"}
DAEMON_OPTIONS = [p for p in cli.params if p.name and p.name not in SKIPPED_OPTIONS]


@pytest.fixture(autouse=True)
def no_wizd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WIZD_"):
            monkeypatch.delenv(key)


@pytest.fixture
def daemon_settings(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The Settings the daemon would have run with (run_daemon replaced by a recorder)."""
    seen: list[Settings] = []
    monkeypatch.setattr(wizd.cli.daemon, "run_daemon", seen.append)
    return seen


def three_values(option: click.Parameter) -> tuple[Any, Any, Any]:
    """Three distinct valid values for a daemon option: the file's, the environment's and the
    flag's."""
    assert isinstance(option, click.Option)
    if option.is_flag:
        return (True, False, True)
    if option.multiple:
        return (["file-q:a"], ["env-q:a"], ["flag-q:a"])
    if isinstance(option.type, click.Choice):
        return tuple(option.type.choices[:3])  # type: ignore[return-value]
    if option.type is click.INT:
        return (2, 3, 4)
    if option.type is click.FLOAT:
        return (2.5, 3.5, 4.5)
    return ("file.value", "env.value", "flag.value")


def toml_line(key: str, value: Any) -> str:
    return f"{key} = {json.dumps(value)}"  # JSON's scalars and lists are valid TOML here


def env_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, list) else str(value)


def flag_args(option: click.Option, value: Any) -> list[str]:
    if option.is_flag:
        return [option.opts[0] if value else option.secondary_opts[0]]
    if option.multiple:
        return [arg for item in value for arg in (option.opts[0], str(item))]
    return [option.opts[0], str(value)]


def test_every_daemon_option_is_covered() -> None:
    names = {p.name for p in DAEMON_OPTIONS}
    assert {"concurrency", "database", "agent", "app", "daemonize", "pidfile"} <= names
    assert names <= set(Settings.model_fields)


@pytest.mark.parametrize("option", DAEMON_OPTIONS, ids=lambda p: p.name)
def test_flag_beats_environment_beats_file(
    option: click.Option, tmp_path: Path, daemon_settings: list[Settings]
) -> None:
    assert option.name is not None
    in_file, in_env, as_flag = three_values(option)
    config = tmp_path / "wizd.toml"
    config.write_text(toml_line(option.name, in_file) + "\n")
    variable = f"WIZD_{option.name.upper()}"

    for env, flags, expected in (
        ({}, [], in_file),
        ({variable: env_text(in_env)}, [], in_env),
        ({variable: env_text(in_env)}, flag_args(option, as_flag), as_flag),
    ):
        ran = invoke(["--config", str(config), *flags], env=env)
        assert ran.code == 0, str(ran)
        assert getattr(daemon_settings.pop(), option.name) == expected, (env, flags)


@pytest.mark.parametrize(
    ("key", "in_file", "in_env"),
    [
        ("retention_days", 3.0, 4.0),
        ("reaper_interval", 3.0, 4.0),
        ("busy_timeout", 3.0, 4.0),
        ("payload_limit", 3000, 4000),
        ("postgres_schema", "from_file", "from_env"),
        ("postgres_pool_size", 3, 4),
        ("synchronous", "FULL", "NORMAL"),
        ("retention_statuses", ["failed"], ["cancelled"]),
    ],
)
def test_environment_beats_file_for_settings_without_flags(
    key: str, in_file: Any, in_env: Any, tmp_path: Path, daemon_settings: list[Settings]
) -> None:
    config = tmp_path / "wizd.toml"
    config.write_text(toml_line(key, in_file) + "\n")
    assert invoke(["--config", str(config)]).code == 0
    assert getattr(daemon_settings.pop(), key) == in_file
    ran = invoke(["--config", str(config)], env={f"WIZD_{key.upper()}": env_text(in_env)})
    assert ran.code == 0, str(ran)
    assert getattr(daemon_settings.pop(), key) == in_env


@pytest.mark.parametrize(
    ("toml", "env", "flags", "expected"),
    [
        # the case: the file's agent value silently beat the flag
        ("[agents.researcher]\nconcurrency = 3\n", {}, ["--concurrency", "7"], 7),
        ("[agents.researcher]\nconcurrency = 3\n", {"WIZD_CONCURRENCY": "7"}, [], 7),
        # within one source the agent's own value is the more specific one
        ("concurrency = 7\n[agents.researcher]\nconcurrency = 3\n", {}, [], 3),
        ("[agents.researcher]\nconcurrency = 3\n", {}, [], 3),
        (
            "concurrency = 7\n",
            {"WIZD_AGENTS": '{"researcher": {"concurrency": 5}}'},
            [],
            5,
        ),
        (
            "",
            {"WIZD_AGENTS": '{"researcher": {"concurrency": 5}}'},
            ["--concurrency", "7"],
            7,
        ),
        ("", {}, [], 1),
    ],
)
def test_agent_concurrency_follows_precedence(
    toml: str,
    env: dict[str, str | None],
    flags: list[str],
    expected: int,
    tmp_path: Path,
    daemon_settings: list[Settings],
) -> None:
    config = tmp_path / "wizd.toml"
    config.write_text(toml)
    ran = invoke(["--config", str(config), "--agent", "researcher", *flags], env=env)
    assert ran.code == 0, str(ran)
    settings = daemon_settings.pop()
    assert settings.concurrency_for("researcher") == expected
    # model_copy (run_daemon makes the database absolute) keeps where values came from
    copied = settings.model_copy(update={"database": "/elsewhere.db"})
    assert copied.concurrency_for("researcher") == expected


def test_plain_names_in_list_variables(daemon_settings: list[Settings]) -> None:
    ran = invoke([], env={"WIZD_AGENT": "researcher", "WIZD_APP": "my.mod:a, other:b"})
    assert ran.code == 0, str(ran)
    settings = daemon_settings.pop()
    assert settings.agent == ["researcher"]
    assert settings.app == ["my.mod:a", "other:b"]


def test_bad_json_variable_names_it(daemon_settings: list[Settings]) -> None:
    ran = invoke([], env={"WIZD_AGENTS": "researcher"})
    assert ran.code == 2, str(ran)
    assert ran.err.startswith("wizd: WIZD_AGENTS: ")
    assert "EnvSettingsSource" not in ran.err
    assert len(ran.err.strip().splitlines()) == 1
    assert not daemon_settings


def test_config_dev_null_is_an_empty_file(daemon_settings: list[Settings]) -> None:
    ran = invoke(["--config", "/dev/null", "--concurrency", "2"])
    assert ran.code == 0, str(ran)
    assert daemon_settings.pop().concurrency == 2


def test_config_not_utf8_is_one_line(tmp_path: Path, daemon_settings: list[Settings]) -> None:
    config = tmp_path / "wizd.toml"
    config.write_bytes(b'database = "caf\xe9.db"\n')
    ran = invoke(["--config", str(config)])
    assert ran.code == 2, str(ran)
    assert ran.err == f"wizd: config: {config} is not UTF-8 text (byte 0xe9 at offset 15)\n"
    assert not daemon_settings


@pytest.mark.parametrize("url", ["mysql://u@host/db", "redis://localhost", "http://x"])
def test_unsupported_database_scheme_is_named(url: str, daemon_settings: list[Settings]) -> None:
    for args in (["-d", url], ["status", "--database", url]):
        ran = invoke(args)
        assert ran.code == 2, str(ran)
        scheme = url.split("://")[0]
        assert ran.err.startswith(f"wizd: database: unsupported scheme {scheme}://; give ")
        assert "postgresql://" in ran.err
        assert "sqlite:////absolute.db" in ran.err
        assert "directory" not in ran.err
    assert not daemon_settings


def test_operator_commands_follow_the_same_precedence(tmp_path: Path) -> None:
    """`wizd status`'s database: its own --database > the group's -d > WIZD_DATABASE > the
    file (each database holds one queue named for where it was given)."""
    urls = {}
    for source in ("own", "group", "env", "file"):
        urls[source] = str(tmp_path / f"{source}.db")
        with wizd.connect_sync(urls[source]) as q:
            q.enqueue("x", {}, queue=source)
    config = tmp_path / "wizd.toml"
    config.write_text(toml_line("database", urls["file"]) + "\n")
    env = {"WIZD_DATABASE": urls["env"]}

    def queue_read(args: list[str], env: dict[str, str | None]) -> str:
        ran = invoke(args, env=env)
        assert ran.code == 0, str(ran)
        (row,) = json.loads(ran.out)
        return str(row["queue"])

    status = ["status", "--json", "--config", str(config)]
    assert queue_read(status, {}) == "file"
    assert queue_read(status, env) == "env"
    assert queue_read(["-d", urls["group"], *status], env) == "group"
    assert queue_read(["-d", urls["group"], *status, "--database", urls["own"]], env) == "own"
