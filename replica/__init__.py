"""The client side of quietsync: the local replica, the stream tracker, chat sessions.

`Replica.open(path)` gives a durable local copy of a user's records: field-level
stamps, an outbox of unpushed writes, the conflict log, CRDT text fields and
change subscriptions. See ``docs/replica.md``. `StreamTracker` follows server
jobs into it, `ThreadSession`/`ChatPane` are the chat views over both,
`Notifications` the notification centre. See ``docs/streaming.md``.

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
from replica.job_mirror import JobGapError
from replica.jobs_client import (
    JobRefusedError,
    JobsError,
    JobsUnavailableError,
    UnknownJobError,
)
from replica.notifications import Notifications
from replica.outbox import RefusedMutation
from replica.records import FieldState
from replica.replica import Replica
from replica.schema import SCHEMA_VERSION
from replica.session import ChatPane, ThreadSession
from replica.subscriptions import ChangeEvent, Origin, Unsubscribe
from replica.tracker import Attachment, StreamTracker, Subscriber

__all__ = [
    "SCHEMA_VERSION",
    "Attachment",
    "ChangeEvent",
    "ChatPane",
    "FieldState",
    "JobGapError",
    "JobRefusedError",
    "JobsError",
    "JobsUnavailableError",
    "NodeIdMismatchError",
    "NotAReplicaError",
    "Notifications",
    "Origin",
    "RefusedMutation",
    "Replica",
    "ReplicaClosedError",
    "ReplicaError",
    "ReplicaLockedError",
    "SchemaVersionError",
    "StorageError",
    "StreamTracker",
    "Subscriber",
    "ThreadSession",
    "UnknownJobError",
    "UnknownMutationError",
    "Unsubscribe",
]
