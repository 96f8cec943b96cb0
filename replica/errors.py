"""Every error the local replica raises, in one place.

    QuietsyncError                      (conflicts.errors)
    └── ReplicaError
        ├── ReplicaLockedError          another process (or Replica object) holds the file
        ├── NotAReplicaError            not SQLite, corrupted, or some other database
        ├── SchemaVersionError          the file was written by a newer quietsync
        ├── NodeIdMismatchError         reopened with a node id other than the stored one
        ├── ReplicaClosedError          the replica was used after `close()`
        ├── UnknownMutationError        an outbox id that is not pending (also a KeyError)
        ├── StorageError                SQLite failed underneath (disk full, I/O error, ...)
        ├── SyncError                   a request to the server failed (sync or jobs API)
        │   ├── TransportError          unreachable, timed out, 5xx, a broken stream: retry later
        │   ├── ProtocolError           the server's answer is not what the protocol says
        │   ├── ClockSkewError          this device's clock disagrees with the server's
        │   └── RequestRefusedError     a 4xx answer (`status`, `code`): retrying cannot help
        │       ├── PushRefusedError    a 422 naming the mutations the server refused
        │       ├── ResyncRequiredError a 409: the cursor means nothing there; the client resyncs
        │       ├── SpaceNotFoundError  a 404: no such space, or the user is not a member
        │       └── UnknownJobError     no such job for this user (never, expired, or not yours)
        ├── SpaceRevokedError       the server closed a space's live socket: access revoked
        └── JobGapError                 a job event starts past the content held: resume

The merge core's own errors pass through unchanged, because they mean the same
thing here: `KindMismatchError` (an LWW write to a CRDT field or the reverse),
`ClockDriftError` (a pulled stamp too far ahead), `CrdtUpdateError`.
sqlite3 errors never escape: they are translated at the store boundary and
re-raised ``from`` the original; aiohttp errors likewise, in the one HTTP
layer both the sync client and the stream tracker use (`quietsync.replica.http`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from quietsync.conflicts import QuietsyncError

__all__ = [
    "ClockSkewError",
    "JobGapError",
    "NodeIdMismatchError",
    "NotAReplicaError",
    "ProtocolError",
    "PushRefusedError",
    "ReplicaClosedError",
    "ReplicaError",
    "ReplicaLockedError",
    "RequestRefusedError",
    "ResyncRequiredError",
    "SchemaVersionError",
    "SpaceNotFoundError",
    "SpaceRevokedError",
    "StorageError",
    "SyncError",
    "TransportError",
    "UnknownJobError",
    "UnknownMutationError",
]


class ReplicaError(QuietsyncError):
    """Base class of every error the local replica raises itself."""


class ReplicaLockedError(ReplicaError):
    """The replica file is open elsewhere: one writer per file, by design.

    Two processes writing one replica would each issue stamps and mutation ids
    from their own in-memory clock and counter; refusing the second opener is
    the only way to keep those unique without a round trip to the file on
    every write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"replica {path} is already open (in this or another process); "
            "a replica file has exactly one owner at a time"
        )


class NotAReplicaError(ReplicaError):
    """The file cannot be opened as a replica; it was left exactly as it was."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is not a quietsync replica: {reason} (the file was not modified)")


class SchemaVersionError(ReplicaError):
    """The file's schema is newer than this code understands; opening it could corrupt it."""

    def __init__(self, path: Path, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"replica {path} has schema version {found}, newer than the {supported} this "
            "version of quietsync supports; upgrade quietsync to open it"
        )


class NodeIdMismatchError(ReplicaError):
    """The node id is generated once per file; a different one would fork its stamps."""

    def __init__(self, path: Path, stored: str, requested: str) -> None:
        self.path = path
        self.stored = stored
        self.requested = requested
        super().__init__(
            f"replica {path} belongs to node {stored!r}, not {requested!r}; "
            "open it without node_id (or with the stored one)"
        )


class ReplicaClosedError(ReplicaError):
    """The replica was used after `close()`."""


class UnknownMutationError(ReplicaError, KeyError):
    """An outbox operation named a mutation id that is not pending."""

    def __init__(self, mutation_id: str) -> None:
        self.mutation_id = mutation_id
        super().__init__(f"no pending mutation {mutation_id!r} in the outbox")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class StorageError(ReplicaError):
    """SQLite failed underneath the replica; the failed operation changed nothing."""


class SyncError(ReplicaError):
    """A request to the server failed: an exchange of the sync client, or a jobs API call."""


class TransportError(SyncError):
    """The server could not be reached, timed out, or failed (5xx).

    Nothing is known about what the server did, so the client retries later
    with the very same mutation ids and the server's dedupe makes that safe.
    """


class ProtocolError(SyncError):
    """The server answered something the protocol does not allow."""


class ClockSkewError(SyncError):
    """This device's clock is wrong by more than the drift bound: only the user can fix it.

    The server refused writes stamped too far ahead of its clock
    (``clock_drift``), or a pulled stamp is too far ahead of this device's
    clock. Retrying cannot help until the clock is set right; the sync client
    shows it in its status (and sets such writes aside) instead of looping.
    """


class RequestRefusedError(SyncError):
    """A 4xx answer: the request itself is wrong, so sending it again cannot help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"server refused the request ({status} {code}): {message}")


class PushRefusedError(RequestRefusedError):
    """A push refused because of some of its mutations; `refused` names every one.

    Nothing of the batch was applied: the client sets those aside
    (`SyncPort.mark_refused`) and pushes the rest again.
    """

    def __init__(
        self, status: int, code: str, message: str, refused: Sequence[tuple[str, str]]
    ) -> None:
        super().__init__(status, code, message)
        self.refused = list(refused)
        """``(mutation id, reason)`` per refused mutation."""


class ResyncRequiredError(RequestRefusedError):
    """The server cannot continue this replica's cursor (``docs/protocol.md``, "Resync").

    `reason` says why: ``history_changed`` (restored from a backup, or reset),
    ``cursor_ahead`` (the server went back), ``cursor_too_old`` (a delete the
    replica may have missed was compacted away); `history` is the server's.
    The sync client recovers by itself (`SyncClient`, rule 8).
    """

    def __init__(self, status: int, code: str, message: str, reason: str, history: str) -> None:
        super().__init__(status, code, message)
        self.reason = reason
        self.history = history


class SpaceNotFoundError(RequestRefusedError):
    """``404 space_not_found``: the space does not exist or the user is not a member
    (the server answers both alike). The sync client purges a space it synced
    (`SyncClient`, rule 12)."""


class SpaceRevokedError(SyncError):
    """The server closed a space's live socket with code 4003: the user lost read access.

    The sync client purges the space (`SyncClient`, rule 12).
    """


class UnknownJobError(RequestRefusedError):
    """The server does not know the job (never existed, expired, or another user's)."""


class JobGapError(ReplicaError):
    """An event starts past the content we hold: the stream must be resumed from our offset."""
