"""`RateLimitedLog`: one log line per failure cause, then a count of the repeats.

A failure that repeats on every tick (a store that is full, a provider that is
down) must not write a line, let alone a traceback, per tick. A cause is
logged the first time it happens; its repeats within `interval` seconds are
only counted, and the next occurrence after the interval logs one line again
with that count (``... (repeated 41 times in the last 60 s)``). `flush` writes
the counts still pending (on shutdown). An expected failure is described by
its type and message (`describe`), without a traceback. A failure nobody
foresaw (a bug) passes its exception as ``exc_info``: the line that is
written carries its traceback, so the bug can be found; its repeats are
counted like any other.

It lives in `quietsync.protocol` because both sides run loops that fail per
tick (the server's job runner and writer; the replica's sync loop and stream
tracker, against a server answering 500 or a socket that keeps failing), and
the protocol package is the only one both may import: the replica and the
server never import each other. It stays as pure as the wire shapes around
it: standard logging and a clock, no I/O of its own, no asyncio.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs

__all__ = ["RateLimitedLog", "describe"]


def describe(exc: BaseException) -> str:
    """An exception as one line: its type and message, no traceback."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@attrs.define
class _Cause:
    logged_at: float
    suppressed: int = 0


@attrs.define
class RateLimitedLog:
    """Logs at most one line per cause per `interval` seconds on `logger`."""

    logger: logging.Logger
    interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _causes: dict[str, _Cause] = attrs.field(factory=dict, init=False)

    def failure(
        self,
        cause: str,
        message: str,
        level: int = logging.WARNING,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log `message` for `cause` unless it was logged less than `interval` ago.

        Returns whether a line was written. A suppressed repeat is counted and
        reported with the next line of the same cause. A written line carries
        `exc_info`'s traceback when one is given (for failures nobody foresaw).
        """
        now = self.clock()
        seen = self._causes.get(cause)
        if seen is not None and now - seen.logged_at < self.interval:
            seen.suppressed += 1
            return False
        if seen is not None and seen.suppressed:
            message += (
                f" (repeated {seen.suppressed} times in the last {now - seen.logged_at:.0f} s)"
            )
        self._causes[cause] = _Cause(now)
        self.logger.log(level, "%s", message, exc_info=exc_info)
        return True

    def flush(self, level: int = logging.WARNING) -> None:
        """Log the repeats still counted, one line per cause, and forget every cause."""
        now = self.clock()
        for cause, seen in self._causes.items():
            if seen.suppressed:
                self.logger.log(
                    level,
                    "%s: repeated %d times in the last %.0f s",
                    cause,
                    seen.suppressed,
                    now - seen.logged_at,
                )
        self._causes.clear()
