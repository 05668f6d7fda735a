"""Settings: flags > environment (WIZD_…) > TOML file > defaults, through pydantic-settings.

An unknown key or a bad value stops start-up with one line per problem naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from wizd.checks import MAX_INT, SizeLimits
from wizd.errors import ConfigError
from wizd.model import NAME_RE

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_CONFIG_FILES = (Path("/etc/wizd/wizd.toml"), Path("wizd.toml"))
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
DATABASE_FORMS = (
    "a SQLite path, sqlite:///relative.db, sqlite:////absolute.db, :memory: "
    "or postgresql://user@host/db"
)
# Where a value came from; a higher rank wins (flags > environment > file > defaults).
DEFAULT, FILE, ENV, FLAG = range(4)


class CommandProcessorConfig(BaseModel):
    """An agent that is a CLI program: payload JSON on stdin, result on stdout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(min_length=1, description="argv; never run through a shell")
    env: dict[str, str] = Field(default_factory=dict, description="variables set for it")
    inherit_env: list[str] = Field(default_factory=list, description="variables passed on")
    cwd: str | None = None
    output_limit: int = Field(default=1024 * 1024, gt=0, description="bytes of stdout kept")
    stderr_line_limit: int = Field(default=8192, gt=0, description="bytes of a stderr line")
    stderr_lines_limit: int = Field(default=1000, ge=0, description="stderr lines per run")
    stderr_bytes_limit: int = Field(default=1024 * 1024, ge=0, description="stderr per run")
    kill_grace: float = Field(default=5.0, ge=0, description="seconds from SIGTERM to SIGKILL")

    @field_validator("inherit_env")
    @classmethod
    def _variable_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("env")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if "\0" in text:
                raise ValueError(f"{name}: a value may not contain NUL")
        return value


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int | None = Field(default=None, ge=1, le=10_000)
    processors: dict[str, CommandProcessorConfig] = Field(default_factory=dict)

    @field_validator("processors")
    @classmethod
    def _names(cls, value: dict[str, CommandProcessorConfig]) -> dict[str, CommandProcessorConfig]:
        for name in value:
            if not NAME_RE.fullmatch(name):
                raise ValueError(f"processor name {name!r} may only contain [A-Za-z0-9_.:-]")
        return value


class Settings(BaseSettings):
    """Every setting of the daemon. config/wizd.toml documents each one."""

    model_config = SettingsConfigDict(env_prefix="WIZD_", extra="forbid", frozen=True)

    database: str = Field(default="wizd.db", description="SQLite path, sqlite:///…, postgresql://…")
    agent: list[str] = Field(default_factory=list, description="queues to serve; [] = all known")
    app: list[str] = Field(default_factory=list, description="module:agent of Python processors")
    concurrency: int = Field(default=1, ge=1, le=10_000)
    poll_interval: float = Field(default=1.0, gt=0, le=3600)
    heartbeat_interval: float = Field(default=30.0, gt=0, le=3600)
    hung_timeout: float = Field(default=300.0, gt=0)
    reaper_interval: float = Field(default=10.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    retention_days: float = Field(default=30.0, ge=0, description="0 keeps jobs forever")
    worker_retention: float = Field(
        default=86400.0, gt=0, description="seconds a stopped or dead daemon stays listed"
    )
    retention_statuses: list[str] = Field(default_factory=lambda: ["completed", "cancelled"])
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout: float = Field(default=5.0, gt=0)
    file_mode: str = Field(
        default="0600", description="octal mode of a SQLite database file wizd creates"
    )
    postgres_schema: str = Field(
        default="wizd", pattern=r"^[a-z_][a-z0-9_]{0,39}$", description="schema of wizd's tables"
    )
    postgres_pool_size: int = Field(default=10, ge=1, le=1000)
    postgres_lock_timeout: float = Field(
        default=3.0, ge=0, le=86_400, description="seconds a statement waits for a lock (0: ever)"
    )
    postgres_idle_in_transaction_timeout: float = Field(
        default=30.0,
        ge=0,
        le=86_400,
        description="seconds before the server ends a session frozen inside a transaction",
    )
    payload_limit: int = Field(default=1024 * 1024, gt=0)
    # What else a job may hold (wizd.SizeLimits): over a cap, the API refuses the write
    # with InvalidJob; a result over result_limit fails its job; an error is cut to error_limit.
    context_limit: int = Field(
        default=1024 * 1024, gt=0, le=MAX_INT, description="bytes of context JSON"
    )
    result_limit: int = Field(
        default=16 * 1024 * 1024, gt=0, le=MAX_INT, description="bytes of result JSON"
    )
    log_limit: int = Field(default=64 * 1024, gt=0, le=MAX_INT, description="bytes of a log line")
    max_tags: int = Field(default=100, gt=0, le=MAX_INT, description="tags of one job")
    error_limit: int = Field(
        default=64 * 1024, gt=0, le=MAX_INT, description="bytes of an error text"
    )
    stream_limit: int = Field(
        default=64 * 1024, gt=0, le=MAX_INT, description="characters of streamed text kept"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="0 turns metrics off; unset: metrics_base_port or the next free one",
    )
    metrics_base_port: int = Field(
        default=9464, ge=1, le=65535, description="the first port tried when metrics_port is unset"
    )
    http_host: str = Field(default="127.0.0.1", description="address of the HTTP API")
    http_port: int = Field(default=8464, ge=0, le=65535, description="port of the HTTP API")
    serve_http: bool = Field(
        default=False, description="the daemon serves the HTTP API itself (the one-box case)"
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    daemonize: bool = False
    pidfile: str | None = None
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    # Where `concurrency` and each agent's own concurrency came from (load_settings): an
    # agent's value in the file must not beat --concurrency or WIZD_CONCURRENCY.
    _concurrency_rank: int = PrivateAttr(default=DEFAULT)
    _agent_ranks: dict[str, int] = PrivateAttr(default_factory=dict)

    @field_validator("database")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if sep and scheme.lower() not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme}://; give {DATABASE_FORMS}")
        return value

    @field_validator("agent")
    @classmethod
    def _queue_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not NAME_RE.fullmatch(name):
                raise ValueError(f"agent name {name!r} may only contain [A-Za-z0-9_.:-]")
        return value

    @field_validator("retention_statuses")
    @classmethod
    def _final_statuses(cls, value: list[str]) -> list[str]:
        final = {"completed", "failed", "cancelled"}
        for status in value:
            if status not in final:
                raise ValueError(f"{status!r} is not a final status ({', '.join(sorted(final))})")
        return value

    @field_validator("file_mode", mode="before")
    @classmethod
    def _octal_mode(cls, value: Any) -> Any:
        # TOML's 0o640 arrives as the number 416; "0640" and "640" as text are octal too.
        text = f"0{value:o}" if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not re.fullmatch(r"0?o?[0-7]{3}", text.strip()):
            raise ValueError(f'{value!r} is not an octal file mode such as "0600" or "0640"')
        mode = int(text.strip().replace("o", ""), 8)
        if mode & 0o600 != 0o600:
            raise ValueError(f"{value!r}: the owner (wizd) must be able to read and write (0600)")
        return f"0{mode:03o}"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("synchronous", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def store_options(self) -> dict[str, Any]:
        """The store's options (a backend takes those it has: wizd.store.open_store)."""
        return {
            "synchronous": self.synchronous,
            "busy_timeout": self.busy_timeout,
            "file_mode": int(self.file_mode, 8),
            "schema": self.postgres_schema,
            "pool_size": self.postgres_pool_size,
            "lock_timeout": self.postgres_lock_timeout,
            "idle_in_transaction_timeout": self.postgres_idle_in_transaction_timeout,
        }

    def size_limits(self) -> SizeLimits:
        """The caps on what a job may hold, for wizd.connect(limits=...)."""
        return SizeLimits(
            payload=self.payload_limit,
            context=self.context_limit,
            result=self.result_limit,
            log=self.log_limit,
            tags=self.max_tags,
            error=self.error_limit,
            stream=self.stream_limit,
        )

    def concurrency_for(self, queue: str) -> int:
        """[agents.QUEUE] concurrency, unless `concurrency` came from a stronger source (a
        flag beats the file's agent value; the file's agent value beats the file's global)."""
        cfg = self.agents.get(queue)
        own = cfg.concurrency if cfg else None
        if own and self._agent_ranks.get(queue, FILE) >= self._concurrency_rank:
            return own
        return self.concurrency


class _Env(EnvSettingsSource):
    """WIZD_* variables; a list setting also takes plain comma-separated names
    (WIZD_AGENT=researcher,writer), not only JSON."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        if (
            isinstance(value, str)
            and get_origin(field.annotation) is list
            and not value.lstrip().startswith("[")
        ):
            return [part.strip() for part in value.split(",") if part.strip()]
        return super().decode_complex_value(field_name, field, value)


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if path.is_dir():
            raise ConfigError(f"config: {path} is a directory, not a TOML file")
        if not path.exists():
            raise ConfigError(f"config: file {path} does not exist")
        return path  # a regular file, or /dev/null, a pipe: read as they are
    for candidate in DEFAULT_CONFIG_FILES:
        if candidate.is_file():
            return candidate
    return None


def load_settings(config_file: str | os.PathLike[str] | None = None, **flags: Any) -> Settings:
    """Settings from flags (None = not given) > WIZD_* environment > TOML file > defaults."""
    path = find_config_file(config_file)
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config: {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                f"at offset {exc.start})"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, _Env(settings_cls)]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    try:
        loaded = _FromFile(**given)
        env_values = _Env(_FromFile)()
    except ValidationError as exc:
        raise ConfigError(describe(exc, path)) from None
    except SettingsError as exc:  # e.g. WIZD_AGENTS that is not a JSON object
        raise ConfigError(env_problem(exc)) from None
    loaded._concurrency_rank = rank("concurrency", given, env_values, file_values)
    env_agents = env_values.get("agents")
    env_agents = env_agents if isinstance(env_agents, dict) else {}
    for queue in loaded.agents:
        from_env = (env_agents.get(queue) or {}).get("concurrency") is not None
        loaded._agent_ranks[queue] = ENV if from_env else FILE
    return loaded


def rank(key: str, *sources: dict[str, Any]) -> int:
    """FLAG, ENV, FILE or DEFAULT: the strongest source that gave `key` (sources strongest
    first: flags, environment, file)."""
    for source_rank, values in zip((FLAG, ENV, FILE), sources, strict=True):
        if values.get(key) is not None:
            return source_rank
    return DEFAULT


def env_problem(exc: SettingsError) -> str:
    """pydantic-settings' 'error parsing value for field "x" from source "EnvSettingsSource"'
    as a line naming the variable and the form expected."""
    found = re.search(r'field "(\w+)"', str(exc))
    if found is None:
        return f"environment: {exc}"
    variable = f"WIZD_{found.group(1).upper()}"
    return (
        f"{variable}: cannot read {os.environ.get(variable, '')!r}: give a JSON value, e.g. "
        """WIZD_AGENTS='{"researcher": {"concurrency": 3}}' (a list also takes a,b,c)"""
    )


def describe(exc: ValidationError, path: Path | None) -> str:
    """One line per problem, each naming the key."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting" + (f" (in {path})" if path else "")
        lines.append(f"{key}: {message}")
    return "\n".join(lines)
