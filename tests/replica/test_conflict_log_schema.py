"""Schema 6: the replica's conflict log holds one conflict per field and losing write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from quietsync.conflicts import HLC, Conflict, Side, canonical_json
from quietsync.replica import Replica, schema


def _conflict(winner: str, loser_wall: int) -> Conflict:
    return Conflict(
        "notes",
        "n1",
        "títle 🎉",
        Side(winner, HLC(20, 0, "b")),
        Side("old", HLC(loser_wall, 0, "a")),
        "server",
    )


def test_a_version_5_log_with_repeats_keeps_the_first_of_each_losing_write(tmp_path: Path) -> None:
    path = tmp_path / "replica.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    schema.migrate(sqlite_utils.Database(conn), target=5)
    reports = [_conflict("first", 9), _conflict("again, after a restore", 9), _conflict("x", 8)]
    conn.executemany(
        "INSERT INTO conflicts (body) VALUES (?)", [(canonical_json(c.to_json()),) for c in reports]
    )
    conn.execute("INSERT INTO meta VALUES ('node_id', 'a')")
    conn.execute("COMMIT")
    conn.close()
    with Replica.open(path, node_id="a") as replica:
        assert replica.conflicts() == [reports[0], reports[2]]
