"""The client side of quietsync: the local replica, and the sync client that keeps it in sync.

`Replica.open(path)` gives a durable local copy of a user's records: field-level
stamps, an outbox of unpushed writes, the conflict log, CRDT text fields and
change subscriptions. See ``docs/replica.md``. `SyncClient(replica, url, token=...)`
keeps it in sync with a server; see ``docs/sync.md``.

Must not import `server` (only the CLI/demo/testing layer wires both).
"""

from replica.errors import (
    NodeIdMismatchError,
    NotAReplicaError,
    ProtocolError,
    PushRefusedError,
    ReplicaClosedError,
    ReplicaError,
    ReplicaLockedError,
    RequestRefusedError,
    SchemaVersionError,
    StorageError,
    SyncError,
    TransportError,
    UnknownMutationError,
)
from replica.outbox import RefusedMutation
from replica.records import FieldState
from replica.replica import Replica
from replica.schema import SCHEMA_VERSION
from replica.subscriptions import ChangeEvent, Origin, Unsubscribe
from replica.sync_backoff import Backoff
from replica.sync_client import SyncClient, SyncStatus, SyncSummary
from replica.transport import LiveMessage, PullPage, PushAnswer, Transport
from replica.transport_http import HttpTransport

__all__ = [
    "SCHEMA_VERSION",
    "Backoff",
    "ChangeEvent",
    "FieldState",
    "HttpTransport",
    "LiveMessage",
    "NodeIdMismatchError",
    "NotAReplicaError",
    "Origin",
    "ProtocolError",
    "PullPage",
    "PushAnswer",
    "PushRefusedError",
    "RefusedMutation",
    "Replica",
    "ReplicaClosedError",
    "ReplicaError",
    "ReplicaLockedError",
    "RequestRefusedError",
    "SchemaVersionError",
    "StorageError",
    "SyncClient",
    "SyncError",
    "SyncStatus",
    "SyncSummary",
    "Transport",
    "TransportError",
    "UnknownMutationError",
    "Unsubscribe",
]
