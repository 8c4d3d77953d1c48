"""Every ``AGENTRUN_*`` setting, in one model, read once at the edge.

The worker entry point, the CLI and ``AgentRunPlugin()`` without arguments read the
environment through ``AgentRunSettings``; everything below them takes the model (or
the values it holds) as an argument. ``docs/settings.md`` lists every field, and a
test keeps the two in step.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentrun._constants import MAX_RUNS_PER_TREE

__all__ = ["ENV_PREFIX", "AgentRunSettings", "SettingsError", "load_settings"]

ENV_PREFIX = "AGENTRUN_"
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting with a value that cannot be used; one line naming variable and value."""


def parse_size(value: object) -> object:
    """Bytes from ``262144``, ``256KiB``, ``2MiB``, ``1g``... (binary units)."""
    if not isinstance(value, str):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError("expected bytes, or a number with KiB, MiB or GiB (e.g. 256KiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_duration(value: object) -> object:
    """A duration from ``90s``, ``30m``, ``6h``, ``2d`` (a bare number is seconds)."""
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value)
    if match is None:
        raise ValueError("expected a duration: a number with s, m, h or d (e.g. 6h)")
    unit = _DURATION_UNITS[(match.group(2) or "s").lower()]
    return timedelta(seconds=float(match.group(1)) * unit)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
Interval = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
Optional = BeforeValidator(_blank_is_none)


class AgentRunSettings(BaseSettings):
    """agentrun's settings; each field is the environment variable ``AGENTRUN_<FIELD>``.

    Temporal's own connection settings (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
    TLS, API key, ``temporal.toml``) stay Temporal's: see ``agentrun.connect``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    task_queue: str = Field(default="agentrun", min_length=1, max_length=1000)
    agents: Annotated[Path | None, Optional] = Field(
        default=None, description="the agent registry file (default: agents.toml if present)"
    )
    owner: Annotated[str | None, Optional] = Field(
        default=None, description="the owner thread of CLI commands (--owner)"
    )
    max_concurrent_turns: int = Field(default=100, ge=1, le=10_000)
    max_turns_per_owner: int | None = Field(default=None, ge=1, le=10_000)
    stream_batch_ms: int = Field(default=50, ge=10, le=5000)
    stream_unwatched_batch_ms: int = Field(default=1000, ge=10, le=60_000)
    max_runs_per_tree: int = Field(default=MAX_RUNS_PER_TREE, ge=1, le=1_000_000)
    storage: Annotated[Literal["local", "s3", "off"], BeforeValidator(_lower)] = "local"
    storage_dir: Path = Path(".temporal/payloads")
    storage_threshold: Size = 256 * 1024
    storage_max_payload: Size = 50 * 1024 * 1024
    s3_bucket: Annotated[str | None, Optional] = None
    storage_gc_interval: Annotated[Interval | None, Optional] = Field(
        default=None, description="how often the worker collects payloads no run can read"
    )
    encryption_keys: Annotated[SecretStr | None, Optional] = None
    encryption_key_file: Annotated[Path | None, Optional] = None
    codec_token: Annotated[SecretStr | None, Optional] = None
    metrics_address: Annotated[str | None, Optional] = None
    otel: Annotated[str | None, Optional] = None
    demo_model: Annotated[str | None, Optional] = None
    demo_base_url: Annotated[str | None, Optional] = None

    @property
    def owner_turn_cap(self) -> int:
        """Turns of one owner thread a worker runs at once: ``max_turns_per_owner``, by
        default half the worker's turn slots, so no owner can take them all."""
        if self.max_turns_per_owner is not None:
            return self.max_turns_per_owner
        return max(1, self.max_concurrent_turns // 2)

    @property
    def stream_batch_interval(self) -> timedelta:
        """``stream_batch_ms`` as a duration."""
        return timedelta(milliseconds=self.stream_batch_ms)

    @property
    def stream_unwatched_batch_interval(self) -> timedelta:
        """``stream_unwatched_batch_ms`` as a duration."""
        return timedelta(milliseconds=self.stream_unwatched_batch_ms)


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: object) -> AgentRunSettings:
    """The settings from the environment (and ``overrides``), checked.

    Raises:
        SettingsError: one line per bad value, naming the variable, the value and
            what is allowed.
    """
    try:
        return AgentRunSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(describe(err)) from None


def describe(err: ValidationError) -> str:
    """A settings validation error as ``AGENTRUN_X='value': what is allowed``."""
    problems = []
    for item in err.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        value = item.get("input")
        shown = value.get_secret_value()[:0] + "***" if isinstance(value, SecretStr) else value
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{env_name(field)}={shown!r}: {message}")
    return "; ".join(problems)
