"""`JobsConfig`: how the jobs feature runs, as one immutable value.

Limits and timings have the defaults ``docs/protocol.md`` documents; the
provider is where job output comes from (`ScriptedProvider` by default: a
deterministic reply, offline, for demos and tests).
"""

from __future__ import annotations

import attrs

from quietsync.server.config import positive_int, positive_seconds, seconds_or_zero
from quietsync.server.jobs.providers import Provider, ScriptedProvider

__all__ = ["JobsConfig"]


@attrs.frozen(kw_only=True)
class JobsConfig:
    """The jobs feature's settings (see the module docstring)."""

    max_per_user: int = attrs.field(
        default=4, validator=positive_int, metadata={"help": "jobs one user may have streaming"}
    )
    timeout: float = attrs.field(
        default=300.0,
        validator=positive_seconds,
        metadata={"help": "seconds a job may stream before it ends as error 'timeout'"},
    )
    retention: float = attrs.field(
        default=3600.0,
        validator=seconds_or_zero,
        metadata={"help": "seconds a finished job stays readable before answering 404"},
    )
    keepalive: float = attrs.field(
        default=15.0,
        validator=positive_seconds,
        metadata={"help": "seconds of silence before an event stream gets a keepalive"},
    )
    flush_interval: float = attrs.field(
        default=0.05,
        validator=positive_seconds,
        metadata={"help": "seconds between two flushes of job output (one transaction each)"},
    )
    orphan_check: float = attrs.field(
        default=1.0,
        validator=positive_seconds,
        metadata={
            "help": "seconds between two checks for the jobs of a server process that died"
            " (PostgreSQL; they end as error 'interrupted')"
        },
    )
    history_messages: int = attrs.field(
        default=20,
        validator=positive_int,
        metadata={"help": "earlier messages of the thread a job sends its provider, at most"},
    )
    history_chars: int = attrs.field(
        default=32_000,
        validator=positive_int,
        metadata={"help": "characters of history and input a job sends its provider, at most"},
    )
    provider: Provider = attrs.field(factory=ScriptedProvider)
    """Where job output comes from."""
