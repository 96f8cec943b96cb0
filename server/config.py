"""`ServerConfig`: everything a server needs to start, as one immutable value.

Tokens map bearer tokens to user ids (``{"token": "user"}``); they come from a
JSON file (`load_tokens_file`) or the ``QUIETSYNC_TOKENS`` environment variable
holding the same JSON (`tokens_from_env`). Limits have the defaults the
protocol documents (``docs/protocol.md``).

The tokens an operator writes are held to more than the ones a program
passes to `ServerConfig` (tests use short ones): at least `MIN_TOKEN_LENGTH`
characters, no token twice in one object (JSON would keep the last one
silently, leaving a user without the token they were given), and a tokens
file that group or others can read or write is warned about, once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from quietsync.conflicts import Resolvers, validate_node_id
from quietsync.server.errors import ConfigError

__all__ = [
    "MIN_TOKEN_LENGTH",
    "POSTGRES_SCHEMES",
    "TOKENS_ENV",
    "ServerConfig",
    "is_postgres_url",
    "load_tokens_file",
    "parse_tokens",
    "positive_int",
    "positive_seconds",
    "seconds_or_zero",
    "tokens_from_env",
]

TOKENS_ENV = "QUIETSYNC_TOKENS"
MIN_TOKEN_LENGTH = 16
"""Characters a token read from a tokens file or ``QUIETSYNC_TOKENS`` has at least."""
_MAX_USER_ID = 128
_OTHERS_MAY_ACCESS = 0o077
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""A database named by a URL with one of these schemes is served by the PostgreSQL store."""

log = logging.getLogger(__name__)


def parse_tokens(obj: Any, *, source: str) -> dict[str, str]:
    """Validate a ``{"token": "user"}`` mapping; `ConfigError` names `source` if bad."""
    if not isinstance(obj, dict) or not obj:
        raise ConfigError(f"{source}: expected a non-empty JSON object {{token: user}}")
    for token, user in obj.items():
        if not isinstance(token, str) or not token or token != token.strip():
            raise ConfigError(f"{source}: tokens must be non-empty strings without spaces")
        if not _is_utf8(token):
            raise ConfigError(f"{source}: a token is not valid UTF-8 (it holds a lone surrogate)")
        if not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_ID:
            raise ConfigError(f"{source}: user ids must be strings of 1-{_MAX_USER_ID} characters")
    return dict(obj)


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class _DuplicateTokenError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook refusing a key given twice (`json` would keep the last)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateTokenError(f"duplicate token {key[:4]!r}... (give each token once)")
        obj[key] = value
    return obj


def _operator_tokens(text: str, *, source: str, not_json: str) -> dict[str, str]:
    """Tokens an operator wrote as JSON `text`: valid, given once each, long enough.

    `source` names where they come from; `not_json` opens the error for bad JSON.
    """
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateTokenError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{not_json}: {exc}") from exc
    tokens = parse_tokens(obj, source=source)
    if any(len(token) < MIN_TOKEN_LENGTH for token in tokens):
        raise ConfigError(f"{source}: tokens must be at least {MIN_TOKEN_LENGTH} characters")
    return tokens


def load_tokens_file(path: Path) -> dict[str, str]:
    """Read a JSON tokens file ``{"token": "user"}``; warn if others may read it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = Path(path).stat().st_mode & 0o777
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read tokens file {path}: {exc}") from exc
    tokens = _operator_tokens(text, source=str(path), not_json=f"cannot read tokens file {path}")
    if mode & _OTHERS_MAY_ACCESS:
        log.warning(
            "tokens file %s has mode %o: group or others may read it; chmod 600 it", path, mode
        )
    return tokens


def tokens_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """Tokens from ``QUIETSYNC_TOKENS`` (the same JSON as a tokens file), None if unset."""
    text = environ.get(TOKENS_ENV)
    if not text:
        return None
    return _operator_tokens(text, source=TOKENS_ENV, not_json=f"{TOKENS_ENV} is not JSON")


def positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    """An attrs validator: a positive int (`ConfigError` naming the field otherwise)."""
    if type(value) is not int or value <= 0:
        raise ConfigError(f"{attribute.name} must be a positive int, got {value!r}")


def positive_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    """An attrs validator: a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def seconds_or_zero(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    """An attrs validator: a number of seconds, zero allowed."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{attribute.name} must be a number of seconds >= 0, got {value!r}")


def is_postgres_url(db: Path | str) -> bool:
    """Whether `db` names a PostgreSQL database (a URL), not an SQLite file."""
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


def _database(db: Path | str) -> Path | str:
    """A file path as a `Path`; ``":memory:"`` and a PostgreSQL URL as given (a `Path`
    would fold the URL's ``//``)."""
    return db if db == ":memory:" or is_postgres_url(db) else Path(db)


def _check_tokens(_: object, __: attrs.Attribute[Any], value: Mapping[str, str]) -> None:
    parse_tokens(dict(value), source="ServerConfig.tokens")


def _check_node(_: object, __: attrs.Attribute[str], value: str) -> None:
    try:
        validate_node_id(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How one server runs.

    `db_path` is the SQLite file, ``":memory:"`` (everything in memory: tests),
    or a ``postgresql://user:password@host:port/database`` URL, which selects
    the PostgreSQL store (``pip install 'quietsync[postgres]'``).

    The limits carry a ``help`` text in their metadata: ``quietsync serve``
    builds one command-line option per limit from them.
    """

    db_path: Path | str = attrs.field(converter=_database)
    tokens: Mapping[str, str] = attrs.field(validator=_check_tokens)
    node_id: str = attrs.field(default="server", validator=_check_node)
    max_body_bytes: int = attrs.field(
        default=1024 * 1024, validator=positive_int, metadata={"help": "request body limit"}
    )
    max_batch: int = attrs.field(
        default=1000, validator=positive_int, metadata={"help": "mutations per push"}
    )
    max_drift_ms: int = attrs.field(
        default=60_000,
        validator=positive_int,
        metadata={"help": "how far ahead of the server clock a stamp may be"},
    )
    pull_limit_default: int = attrs.field(
        default=500, validator=positive_int, metadata={"help": "changes per pull page by default"}
    )
    pull_limit_max: int = attrs.field(
        default=5000, validator=positive_int, metadata={"help": "changes per pull page at most"}
    )
    live_queue_limit: int = attrs.field(
        default=5000,
        validator=positive_int,
        metadata={"help": "changes buffered per live socket before its client must pull"},
    )
    page_max_bytes: int = attrs.field(
        default=4 * 1024 * 1024,
        validator=positive_int,
        metadata={"help": "bytes of values per pull page, backlog page or conflicts page"},
    )
    live_queue_max_bytes: int = attrs.field(
        default=16 * 1024 * 1024,
        validator=positive_int,
        metadata={"help": "bytes buffered per live socket before its client must pull"},
    )
    tombstone_horizon: float = attrs.field(
        default=30 * 24 * 3600.0,
        validator=positive_seconds,
        metadata={"help": "seconds a deleted record is kept before compaction removes it"},
    )
    compact_every: float = attrs.field(
        default=3600.0,
        validator=seconds_or_zero,
        metadata={"help": "seconds between two compactions (0: never; see quietsync compact)"},
    )
    max_spaces_per_user: int = attrs.field(
        default=1000,
        validator=positive_int,
        metadata={"help": "shared spaces one user may be a member of"},
    )
    resolvers: Resolvers = attrs.field(factory=Resolvers)
    suppress_identical: bool = True
    """Count concurrent writes of identical content instead of reporting them as
    conflicts. Only benchmarks turn this off, to show the noise it removes."""

    @property
    def db_label(self) -> str:
        """`db_path` as logs may show it: a URL's password is left out."""
        if not is_postgres_url(self.db_path):
            return str(self.db_path)
        url = urlsplit(str(self.db_path))
        if url.password is None:
            return url.geturl()
        netloc = url.netloc.rpartition("@")[2]
        return url._replace(netloc=f"{url.username}:***@{netloc}").geturl()
