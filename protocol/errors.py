"""The one error the wire messages raise.

    QuietsyncError                     (quietsync.conflicts.errors)
    └── WireError                      a message that does not decode (also a ValueError)
        └── NotJsonError               its bytes are not JSON at all (or not UTF-8)

Each side translates it at its boundary: the server into a 4xx answer naming
the bad member, the replica into a `ProtocolError` (the server sent something
the protocol does not allow).
"""

from __future__ import annotations

from quietsync.conflicts.errors import QuietsyncError

__all__ = ["NotJsonError", "WireError"]


class WireError(QuietsyncError, ValueError):
    """A wire message that does not decode; the message names the bad part."""


class NotJsonError(WireError):
    """The bytes are not JSON text (malformed, or not UTF-8)."""
