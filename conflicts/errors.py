"""Every error the merge core raises, in one place.

    QuietsyncError
    ├── ClockDriftError      a remote stamp is too far ahead of the local wall clock
    ├── KindMismatchError    an LWW write to a CRDT field, or the reverse
    └── CrdtUpdateError      bytes that are not a valid Yjs update (also a ValueError)

`quietsync.protocol`, `quietsync.replica` and `quietsync.server` derive their
own errors from `QuietsyncError`, so an app can catch everything this library
raises with one clause.
"""

from __future__ import annotations

__all__ = [
    "ClockDriftError",
    "CrdtUpdateError",
    "KindMismatchError",
    "QuietsyncError",
]


class QuietsyncError(Exception):
    """Base class of every error raised by quietsync."""


class ClockDriftError(QuietsyncError):
    """A remote stamp is further ahead of the local wall clock than allowed.

    One replica with a wrong clock must not drag every other clock into the
    future, so such a stamp is refused and the local clock is left unchanged.
    """

    def __init__(self, stamp: object, ahead_ms: int, max_drift_ms: int) -> None:
        self.stamp = stamp
        self.ahead_ms = ahead_ms
        self.max_drift_ms = max_drift_ms
        super().__init__(
            f"stamp {stamp} is {ahead_ms} ms ahead of the local clock "
            f"(at most {max_drift_ms} ms allowed)"
        )


class KindMismatchError(QuietsyncError):
    """A field's kind (lww or crdt) is fixed by its first write."""

    def __init__(self, field: str, stored: str, attempted: str) -> None:
        self.field = field
        self.stored = stored
        self.attempted = attempted
        super().__init__(f"field {field!r} is a {stored} field; a {attempted} write is not allowed")


class CrdtUpdateError(QuietsyncError, ValueError):
    """Bytes that are not a valid Yjs update; the document was left unchanged."""
