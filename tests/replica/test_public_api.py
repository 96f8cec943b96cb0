"""The public surface of `replica` is what we meant, and every module declares its own."""

from __future__ import annotations

import importlib
import pkgutil

from quietsync import replica


def test_the_package_exports_exactly_the_public_names() -> None:
    assert set(replica.__all__) == {
        "SCHEMA_VERSION",
        "Attachment",
        "Backoff",
        "ChangeEvent",
        "ChatPane",
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
        "SchemaVersionError",
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
    }
    for name in replica.__all__:
        assert hasattr(replica, name), name


def test_every_module_declares_all() -> None:
    for info in pkgutil.walk_packages(replica.__path__, "quietsync.replica."):
        module = importlib.import_module(info.name)
        assert isinstance(module.__all__, list), info.name


def test_every_error_is_a_quietsync_error() -> None:
    from quietsync.conflicts import QuietsyncError

    for name in replica.__all__:
        obj = getattr(replica, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, replica.ReplicaError) and issubclass(obj, QuietsyncError)
