"""The client side of quietsync: the local replica (sync client and stream tracker build on it).

`Replica.open(path)` gives a durable local copy of a user's records: field-level
stamps, an outbox of unpushed writes, the conflict log, CRDT text fields and
change subscriptions. See ``docs/replica.md``.

Must not import `server` (only the CLI/demo/testing layer wires both).
"""

from replica.errors import (
    NodeIdMismatchError,
    NotAReplicaError,
    ReplicaClosedError,
    ReplicaError,
    ReplicaLockedError,
    SchemaVersionError,
    StorageError,
    UnknownMutationError,
)
from replica.outbox import RefusedMutation
from replica.records import FieldState
from replica.replica import Replica
from replica.schema import SCHEMA_VERSION
from replica.subscriptions import ChangeEvent, Origin, Unsubscribe

__all__ = [
    "SCHEMA_VERSION",
    "ChangeEvent",
    "FieldState",
    "NodeIdMismatchError",
    "NotAReplicaError",
    "Origin",
    "RefusedMutation",
    "Replica",
    "ReplicaClosedError",
    "ReplicaError",
    "ReplicaLockedError",
    "SchemaVersionError",
    "StorageError",
    "UnknownMutationError",
    "Unsubscribe",
]
