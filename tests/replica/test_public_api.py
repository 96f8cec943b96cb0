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
        "ClockSkewError",
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


def test_a_replica_shows_the_app_its_api_and_nothing_of_sync() -> None:
    """Outbox, cursors and remote changes are the sync side's (`sync_port`), not the app's."""
    public = {name for name in dir(replica.Replica) if not name.startswith("_")}
    assert public == {
        "open",
        "close",
        "closed",
        "path",
        "node_id",
        "transaction",
        "put",
        "put_many",
        "delete",
        "get",
        "keys",
        "query",
        "text_insert",
        "text_delete",
        "text_edits",
        "compact",
        "subscribe",
        "conflicts",
        "suppressed_count",
        "refused",
        "pending_count",
        "space",
        "space_id",
    }
    assert "sync_port" not in replica.__all__


def test_a_space_view_has_the_record_api_of_a_replica() -> None:
    public = {name for name in dir(replica.SpaceView) if not name.startswith("_")}
    assert public == {
        "space_id",
        "put",
        "put_many",
        "delete",
        "get",
        "keys",
        "query",
        "text_insert",
        "text_delete",
        "text_edits",
        "subscribe",
        "conflicts",
    }
