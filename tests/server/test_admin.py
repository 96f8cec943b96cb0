"""Operations: ``quietsync backup`` (online), ``restore`` and ``compact`` (stopped server),
and one process per SQLite database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from quietsync.cli import main
from quietsync.protocol import DELETED_FIELD, private_space
from quietsync.server.admin import backup_database, compact_database, restore_database
from quietsync.server.errors import ConfigError
from quietsync.server.keys import CORE_KEY
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.testing import running_server
from tests.server.helpers import Writer, pull_all, push
from tests.server.processes import STARTUP_TIMEOUT, serve_process


def history_of(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        (history,) = db.execute("SELECT value FROM meta WHERE name = 'history_id'").fetchone()
    finally:
        db.close()
    return str(history)


async def test_a_backup_is_taken_online_and_is_a_history_of_its_own(tmp_path: Path) -> None:
    db, copy, w = tmp_path / "server.db", tmp_path / "backup.db", Writer("n1")
    async with running_server(db) as server, server.client("alice") as http:
        await push(http, [w.lww(f"k{i}", "f", i) for i in range(50)])
        live = server.app[CORE_KEY].store.history()
        history = backup_database(db, copy)  # the server keeps serving meanwhile
        await push(http, [w.lww("after", "f", "not in the copy")])
        with pytest.raises(ConfigError, match="never overwrites"):
            backup_database(db, copy)
    assert history != live and history_of(copy) == history
    store = SQLiteStore(copy)
    try:
        page = store.changes(private_space("alice"), 0, 1000, 1 << 20)
        assert [c.value for c in page.changes] == list(range(50))
    finally:
        store.close()


async def test_restore_refuses_a_served_database_and_replaces_a_stopped_one(
    tmp_path: Path,
) -> None:
    db, copy, w = tmp_path / "server.db", tmp_path / "backup.db", Writer("n1")
    async with running_server(db) as server, server.client("alice") as http:
        await push(http, [w.lww("k", "f", "saved")])
        backup_database(db, copy)
        await push(http, [w.lww("k", "f", "lost by the restore")])
        with pytest.raises(ConfigError, match="already served by another process"):
            restore_database(copy, db)
    first = restore_database(copy, db)
    assert not (tmp_path / "server.db-wal").exists()  # never replayed onto the restored file
    async with running_server(db) as again, again.client("alice") as http:
        assert [c["value"] for c in await pull_all(http)] == ["saved"]
        assert again.app[CORE_KEY].store.history() == first != history_of(copy)
        await push(http, [w.lww("k", "f", "written after the first restore")])
    second = restore_database(copy, db)  # the same backup again: yet another history
    assert second not in (first, history_of(copy)) and history_of(db) == second
    with pytest.raises(ConfigError, match="not a quietsync server database"):
        (tmp_path / "other.db").write_bytes(b"not a database at all" * 100)
        restore_database(tmp_path / "other.db", db)


async def test_compact_collects_old_tombstones_of_a_stopped_server(tmp_path: Path) -> None:
    db, w = tmp_path / "server.db", Writer("n1")
    async with running_server(db) as server, server.client("alice") as http:
        await push(http, [w.lww("gone", "f", 1), w.lww("kept", "f", 2)])
        await push(http, [w.lww("gone", DELETED_FIELD, True)])
        with pytest.raises(ConfigError, match="already served"):
            compact_database(db, 0, vacuum=False)
    assert compact_database(db, horizon_s=3600, vacuum=True) == 0  # deleted just now: kept
    assert compact_database(db, horizon_s=0.001, vacuum=True) == 1
    async with running_server(db) as again, again.client("alice") as http:
        assert [c["key"] for c in await pull_all(http)] == ["kept"]
        core = again.app[CORE_KEY]
        assert await core.run(lambda: core.store.horizon(private_space("alice"))) == 3


def test_the_commands_say_what_they_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "server.db"
    SQLiteStore(db).close()
    assert main(["backup", "--db", str(db), str(tmp_path / "b.db")]) == 0
    assert f"backed up {db}" in capsys.readouterr().out
    assert main(["compact", "--db", str(db), "--vacuum"]) == 0
    assert "0 deleted records removed" in capsys.readouterr().out
    assert main(["restore", "--db", str(db), str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


async def test_a_second_serve_on_one_database_is_refused_clearly(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1-ab7Fq2xZ": "alice"}))
    db = tmp_path / "s.db"
    async with serve_process(db, "--tokens", str(tokens)) as first:
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quietsync", "serve", "--db", str(db),
            "--tokens", str(tokens), "--port", "0",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(second.communicate(), STARTUP_TIMEOUT)
        assert second.returncode == 2
        assert "already served by another process" in err.decode()
        assert "Traceback" not in err.decode()
        async with (
            aiohttp.ClientSession(base_url=first.url) as http,
            http.get("/v1/health") as resp,
        ):
            assert resp.status == 200  # the first one serves on, untouched
