"""The deployment files: config/wizd.toml, the Dockerfile and the systemd unit."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wizd.settings import AgentConfig, CommandProcessorConfig, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "wizd.toml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "systemd" / "wizd@.service"

DEFAULTS = Settings.model_construct()
KILL_GRACE = CommandProcessorConfig.model_fields["kill_grace"].default

# `# key = value`: a setting documented but commented out.
COMMENTED = re.compile(r"^#\s?([a-z_]+\s*=\s*.+)$")
TABLE = re.compile(r"^#?\s*\[([A-Za-z0-9_.:-]+)\]\s*$")


@pytest.fixture(autouse=True)
def _no_wizd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WIZD_"):
            monkeypatch.delenv(name)


# -- config/wizd.toml ------------------------------------------------------------------------


def documented(text: str) -> dict[str, dict[str, Any]]:
    """Keys per table (top level: ""), active or commented out, with their values."""
    tables: dict[str, dict[str, Any]] = {"": {}}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if match := TABLE.match(line):
            current = match.group(1)
            tables.setdefault(current, {})
            continue
        if match := COMMENTED.match(line):
            line = match.group(1)
        elif line.startswith("#") or not line:
            continue
        tables[current].update(tomllib.loads(line))
    return tables


def uncommented(text: str) -> str:
    return "\n".join(
        match.group(1) if (match := COMMENTED.match(line.strip())) else line
        for line in text.splitlines()
    )


def test_example_config_loads() -> None:
    settings = load_settings(CONFIG)
    researcher = settings.agents["researcher"]
    assert researcher.concurrency is not None
    assert settings.concurrency_for("researcher") == researcher.concurrency
    assert researcher.processors, "the example agent has a command processor"
    for processor in researcher.processors.values():
        assert processor.command


def test_example_config_documents_every_setting() -> None:
    tables = documented(CONFIG.read_text(encoding="utf-8"))
    top = set(tables[""]) | {name.split(".")[0] for name in tables if name}
    assert top == set(Settings.model_fields), (
        f"undocumented: {sorted(set(Settings.model_fields) - top)}; "
        f"not settings: {sorted(top - set(Settings.model_fields))}"
    )
    agent_keys = {k for name, keys in tables.items() if name.count(".") == 1 for k in keys}
    assert agent_keys | {"processors"} == set(AgentConfig.model_fields)
    processor_keys = {k for name, keys in tables.items() if ".processors." in name for k in keys}
    assert processor_keys == set(CommandProcessorConfig.model_fields)


def test_example_config_shows_the_defaults() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    for key, value in documented(text)[""].items():
        default = Settings.model_fields[key].get_default(call_default_factory=True)
        if default is None:  # no default to show: the example must at least be valid
            assert getattr(Settings(**{key: value}), key) == value
        else:
            assert value == default, f"{key}: documented {value!r}, default {default!r}"
    for key, value in documented(text)["agents.researcher.processors.research"].items():
        field = CommandProcessorConfig.model_fields[key]
        if key not in {"command", "env", "inherit_env", "cwd"}:
            assert value == field.default, f"{key}: documented {value!r}, default {field.default!r}"


def test_example_config_with_everything_uncommented_loads(tmp_path: Path) -> None:
    path = tmp_path / "wizd.toml"
    path.write_text(uncommented(CONFIG.read_text(encoding="utf-8")), encoding="utf-8")
    settings = load_settings(path)
    assert settings.pidfile
    assert settings.agents["researcher"].processors["research"].env


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def docker_args(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in docker_args("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_docker_base_image_is_pinned() -> None:
    stages: set[str] = set()
    images = []
    for args in docker_args("FROM"):
        words = [w for w in args.split() if not w.startswith("--")]
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if words[0].lower() not in stages:
            images.append(words[0])
    assert images
    for image in images:
        name, _, tag = image.partition("@")[0].partition(":")
        assert name.endswith("python"), image
        assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), f"{image}: pin an exact release"
        assert "latest" not in image
    assert len(set(images)) == 1, f"stages use different bases: {images}"


def test_docker_runs_as_a_user_that_is_not_root() -> None:
    users = docker_args("USER")
    assert users, "no USER: the daemon would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_docker_keeps_the_database_on_a_volume() -> None:
    volumes = [v for args in docker_args("VOLUME") for v in json.loads(args)]
    assert "/var/lib/wizd" in volumes
    assert docker_env()["WIZD_DATABASE"].startswith("/var/lib/wizd/")
    # The database is created private (file_mode 0600), as on every other path.
    assert "WIZD_FILE_MODE" not in docker_env()


def test_docker_entrypoint_and_port() -> None:
    assert [json.loads(args) for args in docker_args("ENTRYPOINT")] == [["wizd"]]
    assert docker_args("CMD"), "a default CMD"
    port = str(Settings.model_fields["metrics_base_port"].default)
    assert port in {p.split("/")[0] for args in docker_args("EXPOSE") for p in args.split()}
    assert docker_env()["WIZD_METRICS_HOST"] == "0.0.0.0"
    installs = [args for args in docker_args("RUN") if "pip install" in args]
    assert installs
    assert all("--no-cache-dir" in args for args in installs)


def healthcheck_argv() -> list[str]:
    (args,) = docker_args("HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    argv: list[str] = json.loads(command)
    return argv


@pytest.fixture
def healthz() -> Iterator[tuple[http.server.HTTPServer, list[int]]]:
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server, status
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_docker_healthcheck_asks_healthz(
    healthz: tuple[http.server.HTTPServer, list[int]],
) -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python"
    assert "urllib" in argv[-1]
    assert "http://127.0.0.1:" in argv[-1]
    assert "/healthz" in argv[-1]
    server, status = healthz
    env = {**os.environ, "WIZD_METRICS_PORT": str(server.server_address[1])}

    def check() -> int:
        done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True)
        return done.returncode

    assert check() == 0
    status[0] = 503
    assert check() == 1


def test_dockerignore_keeps_junk_out_and_sources_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/"))
            for p in patterns
        )

    for junk in (".venv", ".git", "wizd.db", "data/wizd.db-wal", "wizd/__pycache__"):
        assert ignored(junk), junk
    for args in docker_args("COPY"):
        if args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert not ignored(source), f"{source} is copied but ignored"


# -- systemd/wizd@.service -------------------------------------------------------------------

# Every directive the unit may use; a typo in a name is an error here even without systemd.
KNOWN = {
    "Unit": {
        "Description", "Documentation", "After", "Before", "Wants", "Requires",
        "StartLimitIntervalSec", "StartLimitBurst", "ConditionPathExists",
    },
    "Service": {
        "Type", "NotifyAccess", "ExecStart", "ExecStartPre", "ExecReload", "Restart",
        "RestartSec", "RestartPreventExitStatus", "SuccessExitStatus", "WatchdogSec",
        "TimeoutStartSec", "TimeoutStopSec", "KillSignal", "KillMode", "SendSIGKILL",
        "User", "Group", "DynamicUser", "SupplementaryGroups", "StateDirectory",
        "StateDirectoryMode", "ConfigurationDirectory", "RuntimeDirectory", "CacheDirectory",
        "LogsDirectory", "WorkingDirectory", "Environment", "EnvironmentFile", "UMask",
        "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem",
        "ProtectHome", "ReadWritePaths", "ReadOnlyPaths", "PrivateTmp", "PrivateDevices",
        "PrivateMounts", "PrivateUsers", "ProtectKernelTunables", "ProtectKernelModules",
        "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
        "ProtectProc", "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces",
        "IPAddressDeny", "IPAddressAllow",
        "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
        "RemoveIPC", "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
        "DevicePolicy", "LimitNOFILE",
    },
    "Install": {"WantedBy", "RequiredBy", "Alias", "DefaultInstance"},
}  # fmt: skip
BOOLEAN = {"yes", "no", "true", "false", "on", "off", "1", "0"}
BOOLEAN_KEYS = {
    "NoNewPrivileges", "PrivateTmp", "PrivateDevices", "PrivateMounts", "PrivateUsers",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
    "MemoryDenyWriteExecute", "RemoveIPC", "SendSIGKILL", "DynamicUser",
}  # fmt: skip
SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def unit() -> dict[str, dict[str, list[str]]]:
    """Sections of the unit, each key with every value it is given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(UNIT.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not key=value"
        assert current is not None, f"line {number}: outside a section"
        assert not value.endswith("\\"), f"line {number}: keep directives on one line"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(key: str) -> str:
    return unit()["Service"][key][-1]


def timespan(text: str) -> float:
    """A systemd time span ("45s", "1min 30s", "90") in seconds."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert parts, text
    for number, unit_name in parts:
        total += float(number) * SECONDS[unit_name or "s"]
    return total


def structural_problems() -> list[str]:
    problems = []
    sections = unit()
    if set(sections) != set(KNOWN):
        problems.append(f"sections {sorted(sections)}, expected {sorted(KNOWN)}")
    for name, keys in sections.items():
        for key, values in keys.items():
            if key not in KNOWN.get(name, ()):
                problems.append(f"[{name}] {key}: not a directive this unit should use")
            repeatable = {"Environment", "EnvironmentFile", "SystemCallFilter", "After", "Wants"}
            if len(values) > 1 and key not in repeatable:
                problems.append(f"[{name}] {key}: given {len(values)} times")
            for value in values:
                if key in BOOLEAN_KEYS and value not in BOOLEAN:
                    problems.append(f"[{name}] {key}={value}: not a boolean")
                if key.endswith("Sec"):
                    try:
                        timespan(value)
                    except (AssertionError, KeyError):
                        problems.append(f"[{name}] {key}={value}: not a time span")
    return problems


def test_unit_type_notify_with_watchdog() -> None:
    assert service("Type") == "notify"
    assert service("NotifyAccess") == "main"
    # The daemon pings at min(heartbeat_interval, WatchdogSec/2), so any WatchdogSec is met;
    # it must still leave room for a slow heartbeat statement (busy_timeout).
    assert timespan(service("WatchdogSec")) > 2 * DEFAULTS.busy_timeout
    assert service("Restart") == "on-failure"
    assert "AF_UNIX" in service("RestrictAddressFamilies").split()  # sd_notify's socket


def test_unit_gives_running_jobs_their_grace_period() -> None:
    assert service("KillSignal") == "SIGTERM"
    assert service("KillMode") == "mixed", "SIGTERM to the daemon, not to running processors"
    assert timespan(service("TimeoutStopSec")) > DEFAULTS.shutdown_grace + KILL_GRACE


def test_unit_runs_one_agent_per_instance() -> None:
    argv = service("ExecStart").split()
    assert argv[0].startswith("/"), "systemd wants an absolute path"
    assert argv[0].endswith("/wizd")
    assert argv[-2:] == ["--agent", "%i"]


def test_unit_runs_confined_with_its_database_in_the_state_directory() -> None:
    assert service("User") not in {"root", "0"}
    assert service("StateDirectory") == "wizd"
    env = dict(item.split("=", 1) for item in unit()["Service"]["Environment"])
    assert env["WIZD_DATABASE"] == "/var/lib/wizd/wizd.db"
    assert service("NoNewPrivileges") == "yes"
    assert service("ProtectSystem") == "strict"
    assert service("CapabilityBoundingSet") == ""
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert service(key) == "yes", key
    # Off on purpose: agent CLIs are often Node.js, and V8 needs W+X memory.
    assert service("MemoryDenyWriteExecute") == "no"
    filters = unit()["Service"]["SystemCallFilter"]
    assert "@system-service" in filters
    # Command processors run programs: fork, exec and process groups must stay allowed.
    assert not any(re.search(r"~.*@process", f) for f in filters)


def test_unit_keeps_files_private_and_traffic_local() -> None:
    """UMask=0077 (the database, its -wal and -shm are the daemon's alone), /proc limited to
    processes, and IP traffic only with this host until a drop-in allows more: the unit's
    comments and the README say how to open it for a PostgreSQL server on another host."""
    assert service("UMask") == "0077"
    assert service("ProcSubset") == "pid"
    assert service("IPAddressDeny") == "any"
    assert service("IPAddressAllow").split() == ["localhost"]
    text = UNIT.read_text(encoding="utf-8")
    assert re.search(r"^#\s+IPAddressAllow=\d+\.\d+\.\d+\.\d+$", text, re.MULTILINE)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    running = readme[readme.index("## Running as a service") :]
    assert "IPAddressAllow=" in running
    assert "PostgreSQL" in running[running.index("IPAddressAllow=") - 400 :][:800]


def test_unit_verifies() -> None:
    """Structural checks always; `systemd-analyze verify` and `security` where installed."""
    problems = structural_problems()
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        problems += systemd_analyze_problems(analyze)
    assert not problems, "\n".join(problems)


def systemd_analyze_problems(analyze: str) -> list[str]:
    problems = []
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
    version = subprocess.run([analyze, "--version"], capture_output=True, text=True, env=env)
    major = int(re.search(r"systemd (\d+)", version.stdout).group(1))  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as directory:
        instance = Path(directory) / "wizd@researcher.service"
        # The unit names /usr/local/bin/wizd and verify checks that the program exists: point
        # the copy at this installation's.
        wizd = Path(sys.executable).with_name("wizd")
        program = str(wizd if wizd.exists() else Path(sys.executable))
        text = UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/wizd", program)
        instance.write_text(text, encoding="utf-8")

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [analyze, *args, str(instance)], capture_output=True, text=True, env=env
            )

        done = run("verify", "--man=no")
        output = (done.stdout + done.stderr).strip()
        # Unknown or invalid directives are only warnings (exit 0) that name the file.
        if done.returncode != 0 or "wizd@" in output:
            problems.append(f"systemd-analyze verify: exit {done.returncode}\n{output}")
        if major >= 250:  # --offline came in systemd 250
            done = run("security", "--offline=true", "--no-pager")
            found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
            if found is None or float(found.group(1)) > 2.0:
                problems.append(f"systemd-analyze security: exposure above 2.0\n{done.stdout}")
            # Findings this unit settles (IPAddressDeny= with a localhost allow-list still
            # scores 0.1, but no longer "does not define an IP address allow list").
            for line in done.stdout.splitlines():
                if re.match(r"✗ (UMask|ProcSubset)=", line) or "does not define an IP" in line:
                    problems.append(f"systemd-analyze security: {line.strip()}")
    return problems


# -- systemd/wizd-api.service ---------------------------------------------------------------

API_UNIT = ROOT / "systemd" / "wizd-api.service"


def test_api_unit_serves_the_api_confined_on_the_daemons_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "UNIT", API_UNIT)
    problems = [p for p in structural_problems() if "NotifyAccess" not in p]
    assert problems == []
    assert service("ExecStart").split()[1:] == ["serve"]
    assert service("Type") == "exec"
    assert service("RestartPreventExitStatus") == "2"  # a refused bind is not retried
    env = dict(item.split("=", 1) for item in unit()["Service"]["Environment"])
    assert env["WIZD_DATABASE"] == "/var/lib/wizd/wizd.db"  # the same as wizd@.service's
    assert service("User") == "wizd"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "MemoryDenyWriteExecute"):
        assert service(key) == "yes", key
    assert service("IPAddressAllow") == "localhost"
