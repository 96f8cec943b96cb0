"""The client side of quietsync: the local replica, its sync client, the stream tracker, chat views.

`Replica.open(path)` gives a durable local copy of a user's records: field-level
stamps, an outbox of unpushed writes, the conflict log, CRDT text fields and
change subscriptions. See ``docs/replica.md``. `SyncClient(replica, url, token=...)`
keeps it in sync with a server; see ``docs/sync.md``. The jobs feature
(`quietsync.replica.jobs`): `StreamTracker` follows server jobs into the
replica, `ThreadSession`/`ChatPane` are the chat views over both,
`Notifications` the notification centre; see ``docs/streaming.md``.

Must not import `quietsync.server` (only the wiring package `quietsync` may
import both sides).
"""

from quietsync.replica.errors import (
    ClockSkewError,
    JobGapError,
    NodeIdMismatchError,
    NotAReplicaError,
    ProtocolError,
    PushRefusedError,
    ReplicaClosedError,
    ReplicaError,
    ReplicaLockedError,
    RequestRefusedError,
    ResyncRequiredError,
    SchemaVersionError,
    SpaceNotFoundError,
    SpaceRevokedError,
    StorageError,
    SyncError,
    TransportError,
    UnknownJobError,
    UnknownMutationError,
)
from quietsync.replica.jobs import (
    Attachment,
    ChatPane,
    Notifications,
    StreamTracker,
    Subscriber,
    ThreadSession,
)
from quietsync.replica.memberships import SpaceMember, SpacesClient
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.records import FieldState
from quietsync.replica.replica import Replica
from quietsync.replica.schema import SCHEMA_VERSION
from quietsync.replica.space_view import SpaceView
from quietsync.replica.subscriptions import ChangeEvent, Origin, Unsubscribe
from quietsync.replica.sync_backoff import Backoff
from quietsync.replica.sync_client import SyncClient, SyncStatus, SyncSummary
from quietsync.replica.transport import LiveMessage, PullPage, PushAnswer, SpaceInfo, Transport
from quietsync.replica.transport_http import HttpTransport

__all__ = [
    "SCHEMA_VERSION",
    "Attachment",
    "Backoff",
    "ChangeEvent",
    "ChatPane",
    "ClockSkewError",
    "FieldState",
    "HttpTransport",
    "JobGapError",
    "LiveMessage",
    "NodeIdMismatchError",
    "NotAReplicaError",
    "Notifications",
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
    "ResyncRequiredError",
    "SchemaVersionError",
    "SpaceInfo",
    "SpaceMember",
    "SpaceNotFoundError",
    "SpaceRevokedError",
    "SpaceView",
    "SpacesClient",
    "StorageError",
    "StreamTracker",
    "Subscriber",
    "SyncClient",
    "SyncError",
    "SyncStatus",
    "SyncSummary",
    "ThreadSession",
    "Transport",
    "TransportError",
    "UnknownJobError",
    "UnknownMutationError",
    "Unsubscribe",
]
