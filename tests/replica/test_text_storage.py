"""How a replica stores CRDT text: an edit costs its own size, not the document's.

The file is read with plain sqlite3 beside the open replica (WAL lets a
reader in), so these tests check what is on disk, not what the code says.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from quietsync.conflicts import CrdtText
from quietsync.replica import Replica, texts
from quietsync.replica.replica import sync_port
from tests.replica.text_crash_child import apply, edit

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_an_edit_appends_its_own_small_update_whatever_the_document_size(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.db"
    with Replica.open(path) as r:
        r.text_insert("docs", "d", "body", 0, "x" * 200_000)  # a big document
        for i in range(300):
            r.text_insert("docs", "d", "body", (i * 7919) % 200_000, "é")
            r.text_delete("docs", "d", "body", (i * 104_729) % 199_000, 1)
        sizes = [size for (size,) in _rows(path, 'SELECT length("update") FROM text_updates')]
        assert len(sizes) == 600
        assert max(sizes) < 64  # bytes: the edit, not the 200 kB document
        (vals,) = _rows(path, "SELECT vals FROM records")[0]
        assert len(str(vals)) < 100  # the row holds no copy of the text while it is stale
        outbox = sync_port(r).outbox_batch(1_000)
        assert max(len(m.update or b"") for m in outbox[1:]) < 64


def test_compaction_folds_updates_into_a_snapshot_and_materialises_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(texts, "COMPACT_ROWS", 50)
    path = tmp_path / "r.db"
    with Replica.open(path) as r:
        r.text_insert("docs", "d", "body", 0, "start")
        for i in range(49):
            r.text_insert("docs", "d", "body", 5 + i, "ü")
        assert _rows(path, "SELECT count(*) FROM text_updates") == [(49,)]
        assert _rows(path, "SELECT fresh FROM texts") == [(0,)]
        r.text_insert("docs", "d", "body", 0, "😀")  # the 50th update: folded
        assert _rows(path, "SELECT count(*) FROM text_updates") == [(0,)]
        assert _rows(path, "SELECT fresh FROM texts") == [(1,)]
        (state,) = _rows(path, "SELECT state FROM texts")[0]
        expected = "😀start" + "ü" * 49
        assert CrdtText(bytes(state)).text == expected  # type: ignore[arg-type]
        assert _rows(path, "SELECT vals ->> '$.body' FROM records") == [(expected,)]


def test_reads_and_queries_see_the_current_text_while_the_row_is_stale(tmp_path: Path) -> None:
    with Replica.open(tmp_path / "r.db") as r:
        r.put_many("docs", {"a": {"title": "A"}, "b": {"title": "B"}})
        r.text_insert("docs", "a", "body", 0, "zeta")
        r.text_insert("docs", "b", "body", 0, "alpha")
        r.text_insert("docs", "a", "body", 4, " ω")  # stale from here on
        assert r.get("docs", "a") == {"title": "A", "body": "zeta ω"}
        assert r.query("docs", where={"title": "A"}) == [{"title": "A", "body": "zeta ω"}]
        # SQL compares the text itself: the stale field is materialised first
        assert r.keys("docs", where={"body": "zeta ω"}) == ["a"]
        assert r.keys("docs", order_by="body") == ["b", "a"]
        r.text_insert("docs", "b", "body", 0, "zz")
        assert r.keys("docs", order_by="body") == ["a", "b"]
        assert [d["body"] for d in r.query("docs")] == ["zeta ω", "zzalpha"]


def test_a_reopened_replica_reads_edits_that_were_never_compacted(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with Replica.open(path) as r:
        r.text_insert("docs", "d", "body", 0, "héllo")
        r.text_edits("docs", "d", "body", [(5, 0, " wörld"), (0, 1, "H")])
    with Replica.open(path) as again:
        assert again.get("docs", "d") == {"body": "Héllo wörld"}
        again.text_insert("docs", "d", "body", 11, "!")  # and editing goes on from there
        assert again.get("docs", "d") == {"body": "Héllo wörld!"}


def test_a_failed_transaction_leaves_text_and_open_document_as_they_were(tmp_path: Path) -> None:
    with Replica.open(tmp_path / "r.db") as r:
        r.text_insert("docs", "d", "body", 0, "keep")
        r.text_insert("docs", "d", "body", 4, "ing")
        with pytest.raises(RuntimeError, match="abort"), r.transaction():
            r.text_insert("docs", "d", "body", 0, "lost ")
            assert r.get("docs", "d") == {"body": "lost keeping"}
            raise RuntimeError("abort")
        assert r.get("docs", "d") == {"body": "keeping"}
        r.text_insert("docs", "d", "body", 7, "!")  # the document was reloaded, not corrupted
        assert r.get("docs", "d") == {"body": "keeping!"}
        assert [m.update is not None for m in sync_port(r).outbox_batch(10)] == [True] * 3


def test_a_bad_edit_in_a_batch_changes_nothing(tmp_path: Path) -> None:
    with Replica.open(tmp_path / "r.db") as r:
        r.text_insert("docs", "d", "body", 0, "abc")
        with pytest.raises(IndexError):
            r.text_edits("docs", "d", "body", [(0, 1, "X"), (9, 0, "late")])
        with pytest.raises(IndexError, match="empty"):
            r.text_edits("docs", "new", "body", [(1, 0, "x")])
        assert r.get("docs", "d") == {"body": "abc"}
        assert r.pending_count() == 1


def test_compact_makes_the_file_about_the_size_of_its_documents(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    rng = random.Random(5)
    with Replica.open(path) as r:
        r.text_insert("docs", "d", "body", 0, "seed ")
        length = 5
        for _ in range(4_000):
            if rng.random() < 0.3 and length > 10:
                at = rng.randrange(length - 5)
                r.text_delete("docs", "d", "body", at, 3)
                length -= 3
            else:
                r.text_insert("docs", "d", "body", rng.randrange(length + 1), "ça ")
                length += 3
        r.text_insert("docs", "d", "body", 0, "!")  # at least one edit not folded yet
        length += 1
        sync_port(r).mark_pushed(m.id for m in sync_port(r).outbox_batch(10_000))
        state = sync_port(r).field_state("docs", "d", "body")
        assert state is not None and state.state is not None
        assert r.compact() == 1
        size = os.path.getsize(path) + os.path.getsize(f"{path}-wal")
        assert size <= 3 * len(state.state) + 64 * 1024  # the state, plus SQLite's fixed pages
        assert len(r.get("docs", "d")["body"]) == length  # type: ignore[index]


def test_sigkill_mid_edit_loses_no_acknowledged_text_edit(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    rng = random.Random()
    acknowledged = 0
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("text_crash_child.py")), str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline() == "ready\n"
            for _ in range(rng.randint(1, 30)):
                acknowledged = int(proc.stdout.readline().split()[1]) + 1
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        for line in proc.stdout:  # acknowledged before the kill landed
            acknowledged = int(line.split()[1]) + 1
        proc.stdout.close()
        with Replica.open(path) as r:
            done = r.get("docs", "meta")["edits"]  # type: ignore[index]
            assert done in (acknowledged, acknowledged + 1)  # + the one in flight
            expected = ""
            for i in range(done):
                expected = apply(edit(i, expected), expected)
            assert r.get("docs", "d") == {"body": expected}
            acknowledged = done
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
