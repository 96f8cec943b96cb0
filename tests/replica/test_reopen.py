"""What a reopened replica keeps, schema migration, and one owner per file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from quietsync.conflicts import HLC, Conflict, FieldRef, Side, initial_text_update, wall_clock_ms
from quietsync.replica import SCHEMA_VERSION, Replica, ReplicaLockedError, schema
from quietsync.replica.replica import sync_port
from tests.replica.conftest import Server

ROOT = Path(__file__).resolve().parents[2]


def test_reopen_keeps_everything(path: Path, server: Server) -> None:
    conflict = Conflict("items", "a", "t", Side(1, HLC(2, 0, "s")), Side(0, HLC(1, 0, "n")), "s")
    with Replica.open(path) as replica:
        node_id = replica.node_id
        replica.put("items", "a", {"t": 1})
        replica.put("items", "b", {"t": 2})
        sync_port(replica).mark_refused(sync_port(replica).outbox_batch(1)[0].id, "too big")
        replica.text_insert("items", "doc", "body", 0, "hello world")
        replica.text_delete("items", "doc", "body", 5, 6)
        sync_port(replica).apply_remote([server.change("c", "t", 3)], cursor=42)
        sync_port(replica).record_conflicts([conflict])
        sync_port(replica).add_suppressed(4)
        outbox = sync_port(replica).outbox_batch()
    with Replica.open(path) as replica:
        assert replica.node_id == node_id
        assert sync_port(replica).cursor == 42
        assert sync_port(replica).outbox_batch() == outbox
        assert [r.reason for r in replica.refused()] == ["too big"]
        assert replica.conflicts() == [conflict]
        assert replica.suppressed_count() == 4
        assert replica.get("items", "doc") == {"body": "hello"}
        replica.text_insert("items", "doc", "body", 5, "!")
        assert replica.get("items", "doc") == {"body": "hello!"}


def test_a_reopened_replica_never_reissues_a_stamp(path: Path, server: Server) -> None:
    ahead = HLC(wall_clock_ms() + 30_000, 0, "server")  # within drift, ahead of the wall clock
    with Replica.open(path) as replica:
        sync_port(replica).apply_remote([server.change("a", "t", 1, stamp=ahead)])
    with Replica.open(path) as replica:
        replica.put("items", "b", {"t": 2})
        [mutation] = sync_port(replica).outbox_batch()
    assert mutation.stamp > ahead


def _version_2_file(path: Path) -> None:
    """A file as version 2 wrote it: per-field rows and a per-field outbox."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    schema.migrate(sqlite_utils.Database(conn), target=2)
    old, crdt = str(HLC(1, 0, "old")), str(HLC(2, 0, "old"))
    state = initial_text_update(FieldRef("items", "doc", "body"), "hello")
    conn.executemany(
        "INSERT INTO fields VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("items", "a", "t", "lww", '"v1"', None, old, None),
            ("items", "a", "n", "lww", "2", None, old, None),
            ("items", "doc", "body", "crdt", None, state, crdt, None),
            ("items", "gone", "_deleted", "lww", "true", None, old, None),
        ],
    )
    conn.executemany(
        'INSERT INTO outbox (n, collection, key, field, kind, value, "update", stamp, base) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, "items", "a", "t", "lww", '"v1"', None, old, None),
            (2, "items", "doc", "body", "crdt", None, state, crdt, old),
        ],
    )
    conn.execute("INSERT INTO meta VALUES ('node_id', 'old'), ('mutation_n', '2')")
    conn.execute("COMMIT")
    conn.close()


def test_an_older_schema_is_migrated_in_place(path: Path) -> None:
    _version_2_file(path)
    with Replica.open(path) as replica:
        assert replica.node_id == "old"
        assert replica.get("items", "a") == {"t": "v1", "n": 2}
        assert replica.get("items", "doc") == {"body": "hello"}
        assert replica.get("items", "gone") is None
        assert replica.keys("items", where={"t": "v1"}) == ["a"]
        assert [(m.id, m.field, m.value, m.base) for m in sync_port(replica).outbox_batch()] == [
            ("old:1", "t", "v1", None),
            ("old:2", "body", None, HLC(1, 0, "old")),
        ]
        replica.text_insert("items", "doc", "body", 5, "!")  # the CRDT state came along
        assert replica.get("items", "doc") == {"body": "hello!"}
        assert sync_port(replica).outbox_batch()[-1].id == "old:3"
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert version == (str(SCHEMA_VERSION),)
    assert {"records", "texts", "outbox"} <= tables
    assert not {"fields", "outbox_v2"} & tables


def test_the_file_is_in_wal_mode(replica: Replica) -> None:
    with sqlite3.connect(replica.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_second_owner_in_this_process_is_refused(replica: Replica, path: Path) -> None:
    with pytest.raises(ReplicaLockedError, match="already open"):
        Replica.open(path)
    replica.put("items", "a", {"x": 1})  # the owner is unaffected
    replica.close()
    with Replica.open(path) as again:
        assert again.get("items", "a") == {"x": 1}


def test_a_second_process_is_refused_while_the_first_holds_the_file(
    replica: Replica, path: Path
) -> None:
    code = (
        "import sys\n"
        "from replica import Replica, ReplicaLockedError\n"
        "try:\n"
        "    Replica.open(sys.argv[1])\n"
        "except ReplicaLockedError as exc:\n"
        "    print('locked:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("locked:")
