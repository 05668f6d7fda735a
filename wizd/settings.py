"""Settings: flags > environment (WIZD_…) > TOML file > defaults, through pydantic-settings.

An unknown key or a bad value stops start-up with one line per problem naming the key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from wizd.errors import ConfigError
from wizd.model import NAME_RE

DEFAULT_CONFIG_FILES = (Path("/etc/wizd/wizd.toml"), Path("wizd.toml"))


class CommandProcessorConfig(BaseModel):
    """An agent that is a CLI program: payload JSON on stdin, result on stdout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(min_length=1, description="argv; never run through a shell")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    output_limit: int = Field(default=1024 * 1024, gt=0, description="bytes of stdout kept")
    kill_grace: float = Field(default=5.0, ge=0, description="seconds from SIGTERM to SIGKILL")


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
    retention_statuses: list[str] = Field(default_factory=lambda: ["completed", "cancelled"])
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout: float = Field(default=5.0, gt=0)
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
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 turns metrics off")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    daemonize: bool = False
    pidfile: str | None = None
    agents: dict[str, AgentConfig] = Field(default_factory=dict)

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
            "schema": self.postgres_schema,
            "pool_size": self.postgres_pool_size,
            "lock_timeout": self.postgres_lock_timeout,
            "idle_in_transaction_timeout": self.postgres_idle_in_transaction_timeout,
        }

    def concurrency_for(self, queue: str) -> int:
        cfg = self.agents.get(queue)
        return cfg.concurrency if cfg and cfg.concurrency else self.concurrency


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config: file {path} does not exist")
        return path
    for candidate in DEFAULT_CONFIG_FILES:
        if candidate.is_file():
            return candidate
    return None


def load_settings(config_file: str | os.PathLike[str] | None = None, **flags: Any) -> Settings:
    """Settings from flags (None = not given) > WIZD_* environment > TOML file > defaults."""
    path = find_config_file(config_file)
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config: cannot read {path}: {exc}") from None

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
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    try:
        loaded = _FromFile(**given)
    except ValidationError as exc:
        raise ConfigError(describe(exc, path)) from None
    except SettingsError as exc:  # e.g. WIZD_APP=x:y where a JSON list is expected
        raise ConfigError(
            f"{exc}; list settings in the environment are JSON, e.g. "
            """WIZD_APP='["myagents:researcher"]'"""
        ) from None
    return loaded


def describe(exc: ValidationError, path: Path | None) -> str:
    """One line per problem, each naming the key."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "settings"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting" + (f" (in {path})" if path else "")
        lines.append(f"{key}: {message}")
    return "\n".join(lines)
