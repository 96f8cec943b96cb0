"""`ServerConfig`: everything a server needs to start, as one immutable value.

Tokens map bearer tokens to user ids (``{"token": "user"}``); they come from a
JSON file (`load_tokens_file`) or the ``QUIETSYNC_TOKENS`` environment variable
holding the same JSON (`tokens_from_env`). Limits have the defaults the
protocol documents (``docs/protocol.md``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from quietsync.conflicts import Resolvers, validate_node_id
from quietsync.server.errors import ConfigError
from quietsync.server.providers import Provider, ScriptedProvider

__all__ = ["TOKENS_ENV", "ServerConfig", "load_tokens_file", "parse_tokens", "tokens_from_env"]

TOKENS_ENV = "QUIETSYNC_TOKENS"
_MAX_USER_ID = 128


def parse_tokens(obj: Any, *, source: str) -> dict[str, str]:
    """Validate a ``{"token": "user"}`` mapping; `ConfigError` names `source` if bad."""
    if not isinstance(obj, dict) or not obj:
        raise ConfigError(f"{source}: expected a non-empty JSON object {{token: user}}")
    for token, user in obj.items():
        if not isinstance(token, str) or not token or token != token.strip():
            raise ConfigError(f"{source}: tokens must be non-empty strings without spaces")
        if not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_ID:
            raise ConfigError(f"{source}: user ids must be strings of 1-{_MAX_USER_ID} characters")
    return dict(obj)


def load_tokens_file(path: Path) -> dict[str, str]:
    """Read a JSON tokens file ``{"token": "user"}``."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read tokens file {path}: {exc}") from exc
    return parse_tokens(obj, source=str(path))


def tokens_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """Tokens from ``QUIETSYNC_TOKENS`` (the same JSON as a tokens file), None if unset."""
    text = environ.get(TOKENS_ENV)
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{TOKENS_ENV} is not JSON: {exc}") from exc
    return parse_tokens(obj, source=TOKENS_ENV)


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value <= 0:
        raise ConfigError(f"{attribute.name} must be a positive int, got {value!r}")


def _positive_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _seconds_or_zero(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{attribute.name} must be a number of seconds >= 0, got {value!r}")


def _fail_after(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (type(value) is not int or value < 0):
        raise ConfigError(f"{attribute.name} must be None or an int >= 0, got {value!r}")


def _check_tokens(_: object, __: attrs.Attribute[Any], value: Mapping[str, str]) -> None:
    parse_tokens(dict(value), source="ServerConfig.tokens")


def _check_node(_: object, __: attrs.Attribute[str], value: str) -> None:
    try:
        validate_node_id(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How one server runs. ``db_path=":memory:"`` keeps everything in memory (tests)."""

    db_path: Path | str = attrs.field(converter=lambda p: p if p == ":memory:" else Path(p))
    tokens: Mapping[str, str] = attrs.field(validator=_check_tokens)
    node_id: str = attrs.field(default="server", validator=_check_node)
    max_body_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    max_batch: int = attrs.field(default=1000, validator=_positive)
    max_drift_ms: int = attrs.field(default=60_000, validator=_positive)
    pull_limit_default: int = attrs.field(default=500, validator=_positive)
    pull_limit_max: int = attrs.field(default=5000, validator=_positive)
    live_queue_limit: int = attrs.field(default=5000, validator=_positive)
    """Changes buffered per WebSocket before its client is told to pull instead."""
    resolvers: Resolvers = attrs.field(factory=Resolvers)
    suppress_identical: bool = True
    """Count concurrent writes of identical content instead of reporting them as
    conflicts. Only benchmarks turn this off, to show the noise it removes."""
    max_jobs_per_user: int = attrs.field(default=4, validator=_positive)
    """Jobs one user may have streaming at once (the next start answers 429)."""
    job_timeout: float = attrs.field(default=300.0, validator=_positive_seconds)
    """Seconds a job may stream before it ends as error "timeout"."""
    job_retention: float = attrs.field(default=3600.0, validator=_seconds_or_zero)
    """Seconds a finished job stays readable (GET, events) before answering 404."""
    job_keepalive: float = attrs.field(default=15.0, validator=_positive_seconds)
    job_flush_interval: float = attrs.field(default=0.05, validator=_positive_seconds)
    """Seconds between two flushes of job output (one transaction per flush)."""
    job_tokens: int = attrs.field(default=40, validator=_positive)
    job_token_delay: float = attrs.field(default=0.02, validator=_seconds_or_zero)
    job_fail_after: int | None = attrs.field(default=None, validator=_fail_after)
    provider: Provider | None = None
    """Where job output comes from; None: a `ScriptedProvider` from the ``job_*`` settings."""

    def job_provider(self) -> Provider:
        """The provider jobs stream from (`provider`, else the scripted one configured here)."""
        if self.provider is not None:
            return self.provider
        return ScriptedProvider(self.job_tokens, self.job_token_delay, self.job_fail_after)
