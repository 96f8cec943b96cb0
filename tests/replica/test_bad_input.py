"""Bad input gets a clear error and changes nothing: values, names, kinds, files, stamps."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from quietsync.conflicts import (
    HLC,
    ClockDriftError,
    CrdtUpdateError,
    KindMismatchError,
    wall_clock_ms,
)
from quietsync.protocol import Change, WireError
from quietsync.replica import (
    SCHEMA_VERSION,
    NodeIdMismatchError,
    NotAReplicaError,
    Replica,
    ReplicaClosedError,
    SchemaVersionError,
    StorageError,
    UnknownMutationError,
)
from quietsync.replica.replica import sync_port
from tests.replica.conftest import Server


def _snapshot(replica: Replica) -> tuple[object, ...]:
    return (
        replica.query("items"),
        sync_port(replica).outbox_batch(1000),
        sync_port(replica).cursor,
        sync_port(replica).clock.last,
    )


@pytest.mark.parametrize(
    "bad",
    [object(), {1, 2}, b"bytes", math.nan, math.inf, {"nested": object()}, {1: "key"}, "\ud800"],
)
def test_a_value_that_is_not_json_is_a_type_error_naming_the_field(
    replica: Replica, bad: object
) -> None:
    replica.put("items", "a", {"ok": 1})
    before = _snapshot(replica)
    with pytest.raises(TypeError, match="'broken'"):
        replica.put_many("items", {"a": {"ok": 2}, "b": {"fine": 1, "broken": bad}})
    assert _snapshot(replica) == before


def test_a_circular_value_is_refused(replica: Replica) -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="'loop'"):
        replica.put("items", "a", {"loop": loop})
    assert replica.get("items", "a") is None


@pytest.mark.parametrize(
    ("collection", "key", "fields", "error"),
    [
        ("", "a", {"f": 1}, WireError),
        ("items", "", {"f": 1}, WireError),
        ("items", "k" * 257, {"f": 1}, WireError),
        ("items", "a", {"": 1}, WireError),
        ("items", "a", {"f" * 65: 1}, WireError),
        ("items", "a", {"_deleted": True}, ValueError),
        ("items", "a", ["not", "a", "mapping"], TypeError),
    ],
)
def test_bad_names_and_shapes_are_refused(
    replica: Replica, collection: str, key: str, fields: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        replica.put(collection, key, fields)  # type: ignore[arg-type]
    assert replica.pending_count() == 0


def test_an_lww_write_to_a_text_field_and_the_reverse_are_refused(replica: Replica) -> None:
    replica.text_insert("items", "a", "body", 0, "hello")
    replica.put("items", "a", {"title": "t"})
    before = _snapshot(replica)
    with pytest.raises(KindMismatchError, match="'body' is a crdt field"):
        replica.put("items", "a", {"title": "u", "body": "plain"})
    with pytest.raises(KindMismatchError, match="'title' is a lww field"):
        replica.text_insert("items", "a", "title", 0, "x")
    assert _snapshot(replica) == before
    assert replica.get("items", "a") == {"body": "hello", "title": "t"}


def test_out_of_range_text_edits_are_index_errors(replica: Replica) -> None:
    with pytest.raises(IndexError):
        replica.text_insert("items", "a", "body", 3, "x")  # a new field starts at 0
    replica.text_insert("items", "a", "body", 0, "abc")
    with pytest.raises(IndexError):
        replica.text_insert("items", "a", "body", 4, "x")
    with pytest.raises(IndexError):
        replica.text_delete("items", "a", "body", 2, 5)
    with pytest.raises(TypeError):
        replica.text_insert("items", "a", "body", 0, 42)  # type: ignore[arg-type]
    assert replica.get("items", "a") == {"body": "abc"}
    assert replica.pending_count() == 1


def test_remote_changes_of_unknown_or_wrong_kind_change_nothing(
    replica: Replica, server: Server
) -> None:
    replica.put("items", "a", {"title": "t"})
    sync_port(replica).apply_remote([server.change("b", "x", 1)], cursor=1)
    before = _snapshot(replica)
    good = server.change("c", "x", 1)
    unknown = Change(
        id="u",
        collection="items",
        key="c",
        field="y",
        kind="blob",
        stamp=server.clock.now(),  # type: ignore[arg-type]
    )
    with pytest.raises(ValueError, match="unknown kind 'blob'"):
        sync_port(replica).apply_remote([good, unknown], cursor=2)
    with pytest.raises(KindMismatchError):
        sync_port(replica).apply_remote([good, server.text("a", "title", "x")], cursor=2)
    with pytest.raises(KindMismatchError):
        sync_port(replica).apply_remote([good, server.text("a", "_deleted", "x")], cursor=2)
    with pytest.raises(CrdtUpdateError):
        sync_port(replica).apply_remote(
            [good, server.change("c", "body", update=b"\xff\x00garbage")], 2
        )
    with pytest.raises(TypeError):
        sync_port(replica).apply_remote([good, {"not": "a change"}], cursor=2)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="cursor"):
        sync_port(replica).apply_remote([good], cursor=-1)
    assert _snapshot(replica) == before


def test_a_drifting_remote_stamp_refuses_the_whole_call(replica: Replica, server: Server) -> None:
    sync_port(replica).apply_remote([server.change("a", "x", 1)], cursor=1)
    before = _snapshot(replica)
    future = HLC(wall_clock_ms() + 10 * 60_000, 0, "server")
    with pytest.raises(ClockDriftError):
        sync_port(replica).apply_remote(
            [server.change("b", "x", 2), server.change("c", "x", 3, stamp=future)], 2
        )
    assert _snapshot(replica) == before
    assert replica.get("items", "b") is None


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(path: Path) -> None:
    garbage = b"this is not a database, just some bytes " * 100
    path.write_bytes(garbage)
    with pytest.raises(NotAReplicaError, match="not modified"):
        Replica.open(path)
    assert path.read_bytes() == garbage
    assert not Path(f"{path}-wal").exists()


def test_a_corrupted_replica_is_refused_and_left_alone(path: Path) -> None:
    with Replica.open(path) as replica:
        replica.put_many("items", {f"k{i}": {"i": i} for i in range(200)})
    data = bytearray(path.read_bytes())
    data[0:16] = b"garbage garbage!"  # destroy the SQLite header
    path.write_bytes(bytes(data))
    with pytest.raises(NotAReplicaError):
        Replica.open(path)
    assert path.read_bytes() == bytes(data)


def test_another_sqlite_database_is_refused_and_left_alone(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    before = path.read_bytes()
    with pytest.raises(NotAReplicaError, match="other tables"):
        Replica.open(path)
    assert path.read_bytes() == before


def test_a_file_from_a_newer_schema_is_refused(path: Path) -> None:
    Replica.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Replica.open(path)


def test_reopening_with_another_node_id_is_refused(path: Path) -> None:
    Replica.open(path, node_id="alice").close()
    with pytest.raises(NodeIdMismatchError, match="'alice', not 'bob'"):
        Replica.open(path, node_id="bob")
    with Replica.open(path, node_id="alice") as replica:
        assert replica.node_id == "alice"
    with pytest.raises(ValueError, match="invalid node id"):
        Replica.open(path.with_name("other.db"), node_id="no spaces")


def test_a_closed_replica_refuses_to_work(replica: Replica) -> None:
    replica.close()
    replica.close()
    with pytest.raises(ReplicaClosedError):
        replica.put("items", "a", {"x": 1})
    with pytest.raises(ReplicaClosedError):
        replica.get("items", "a")
    with pytest.raises(ReplicaClosedError):
        replica.pending_count()


def test_outbox_calls_with_unknown_ids_are_refused(replica: Replica) -> None:
    replica.put("items", "a", {"x": 1})
    with pytest.raises(UnknownMutationError):
        sync_port(replica).mark_refused("local:99", "nope")
    with pytest.raises(UnknownMutationError):
        sync_port(replica).mark_pushed(["someone-else:1"])
    with pytest.raises(ValueError):
        sync_port(replica).outbox_batch(0)
    with pytest.raises(ValueError):
        sync_port(replica).add_suppressed(-1)
    assert replica.pending_count() == 1


def test_an_sqlite_without_json_operators_is_named_before_the_file_is_touched(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite 3.37 does not run here, so the version it would report is patched in."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 37, 2))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.37.2")
    with pytest.raises(StorageError, match=r"SQLite 3\.38\.0 or newer.*links SQLite 3\.37\.2"):
        Replica.open(path)
    assert not path.exists()
