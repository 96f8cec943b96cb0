"""What a reopened replica keeps, schema migration, and one owner per file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from conflicts import HLC, Conflict, Side, wall_clock_ms
from replica import SCHEMA_VERSION, Replica, ReplicaLockedError, schema
from tests.replica.conftest import Server

ROOT = Path(__file__).resolve().parents[2]


def test_reopen_keeps_everything(path: Path, server: Server) -> None:
    conflict = Conflict("items", "a", "t", Side(1, HLC(2, 0, "s")), Side(0, HLC(1, 0, "n")), "s")
    with Replica.open(path) as replica:
        node_id = replica.node_id
        replica.put("items", "a", {"t": 1})
        replica.put("items", "b", {"t": 2})
        replica.mark_refused(replica.outbox_batch(1)[0].id, "too big")
        replica.text_insert("items", "doc", "body", 0, "hello world")
        replica.text_delete("items", "doc", "body", 5, 6)
        replica.apply_remote([server.change("c", "t", 3)], cursor=42)
        replica.record_conflicts([conflict])
        replica.add_suppressed(4)
        outbox = replica.outbox_batch()
    with Replica.open(path) as replica:
        assert replica.node_id == node_id
        assert replica.cursor == 42
        assert replica.outbox_batch() == outbox
        assert [r.reason for r in replica.refused()] == ["too big"]
        assert replica.conflicts() == [conflict]
        assert replica.suppressed_count() == 4
        assert replica.get("items", "doc") == {"body": "hello"}
        replica.text_insert("items", "doc", "body", 5, "!")
        assert replica.get("items", "doc") == {"body": "hello!"}


def test_a_reopened_replica_never_reissues_a_stamp(path: Path, server: Server) -> None:
    ahead = HLC(wall_clock_ms() + 30_000, 0, "server")  # within drift, ahead of the wall clock
    with Replica.open(path) as replica:
        replica.apply_remote([server.change("a", "t", 1, stamp=ahead)])
    with Replica.open(path) as replica:
        replica.put("items", "b", {"t": 2})
        [mutation] = replica.outbox_batch()
    assert mutation.stamp > ahead


def test_an_older_schema_is_migrated_in_place(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN")
    schema.migrate(db, target=1)
    conn.execute(
        "INSERT INTO fields VALUES ('items', 'a', 't', 'lww', '\"v1\"', NULL, ?, NULL)",
        (str(HLC(1, 0, "old")),),
    )
    conn.execute("INSERT INTO meta VALUES ('node_id', 'old')")
    conn.execute("COMMIT")
    assert "fields_by_value" not in {i.name for i in db["fields"].indexes}
    conn.close()
    with Replica.open(path) as replica:
        assert replica.node_id == "old"
        assert replica.keys("items", where={"t": "v1"}) == ["a"]
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(fields)")}
    assert version == (str(SCHEMA_VERSION),)
    assert "fields_by_value" in indexes


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
