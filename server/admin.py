"""Operations on a server database: ``quietsync backup``, ``restore`` and ``compact``.

* **backup** copies a database consistently while its server runs (SQLite's
  online backup API: one snapshot, even with writers busy) and gives the copy
  a history id of its own. A server started on the copy is another history,
  so replicas that synced with the original resync against it by themselves
  (``docs/protocol.md``, "Resync"), and nothing they acknowledged is lost.
* **restore** puts a backup in place of a database whose server is stopped:
  it refuses while a server holds the database, removes the old write-ahead
  log (replayed onto the restored file it would corrupt it), and swaps the
  file in whole. The restored database gets a history id of its own too, so
  restoring one backup twice makes two histories, never one told twice.
* **compact** collects tombstones past a horizon and vacuums the file, while
  no server runs (a running server collects tombstones itself, every
  ``--compact-every`` seconds).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import attrs

from quietsync.conflicts import wall_clock_ms
from quietsync.server.backend import new_history_id
from quietsync.server.config import ServerConfig
from quietsync.server.errors import ConfigError, StoreError
from quietsync.server.sqlite_schema import read_meta
from quietsync.server.sqlite_store import SQLiteStore, translated_errors

__all__ = [
    "add_backup_arguments",
    "add_compact_arguments",
    "add_restore_arguments",
    "backup",
    "backup_database",
    "compact",
    "compact_database",
    "restore",
    "restore_database",
]

_SIDE_FILES = ("-wal", "-shm")


def backup_database(source: Path, dest: Path) -> str:
    """Copy `source` (served or not) to `dest` as one snapshot; the copy's new history id."""
    if dest.exists():
        raise ConfigError(f"{dest} exists: a backup never overwrites a file")
    if not source.exists():
        raise ConfigError(f"{source} does not exist")
    with translated_errors(f"back up {source}"):
        src = sqlite3.connect(source)
        out = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(out)  # all pages in one step: one consistent snapshot
            return _begin_history(out, "backup_of")
        finally:
            out.close()
            src.close()


def restore_database(backup_file: Path, db: Path) -> str:
    """Put `backup_file` in place of `db`, whose server must be stopped; its new history id.

    Every restore starts a history of its own, even of the same backup twice:
    a replica that synced with the first restored server must not take the
    second for the same one (the two diverged after the restore).
    """
    _check_database(backup_file)
    if db.exists():
        SQLiteStore(db).close()  # takes and releases the lock: refused while served
    staged = db.with_name(db.name + ".restoring")
    shutil.copyfile(backup_file, staged)
    with translated_errors(f"restore {backup_file}"):
        out = sqlite3.connect(staged, isolation_level=None)
        try:
            history = _begin_history(out, "restored_from")
        finally:
            out.close()
    for suffix in _SIDE_FILES:
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    staged.replace(db)  # atomic: the database is the old one or the restored one
    return history


def _begin_history(db: sqlite3.Connection, origin_key: str) -> str:
    """Give the database `db` a new history id, noting the one it came from."""
    original = read_meta(db).get("history_id", "")
    history = new_history_id()
    db.execute("BEGIN")
    db.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [
            ("history_id", history),
            (origin_key, original),
            (f"{origin_key}_ms", str(wall_clock_ms())),
        ],
    )
    db.execute("COMMIT")
    return history


def _check_database(path: Path) -> None:
    """Refuse a file that is not a quietsync server database (read only: nothing changes)."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = read_meta(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} is not a quietsync server database: {exc}") from exc
    if "history_id" not in meta:
        raise ConfigError(f"{path} is not a quietsync server database (no history id)")


def compact_database(db: Path, horizon_s: float, *, vacuum: bool) -> int:
    """Collect tombstones older than `horizon_s`, then vacuum; how many records went."""
    store = SQLiteStore(db)  # refused while a server holds the database
    try:
        removed = store.collect_tombstones(wall_clock_ms() - int(horizon_s * 1000))
        if vacuum:
            with translated_errors("vacuum"):
                store.connection.execute("VACUUM")
    finally:
        store.close()
    return removed


def add_backup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, required=True, help="the database to back up")
    parser.add_argument("dest", type=Path, help="the backup file to write (must not exist)")


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, required=True, help="the database to replace")
    parser.add_argument("backup", type=Path, help="the backup file to restore")


def add_compact_arguments(parser: argparse.ArgumentParser) -> None:
    horizon = attrs.fields(ServerConfig).tombstone_horizon
    parser.add_argument("--db", type=Path, required=True, help="the database to compact")
    parser.add_argument(
        "--tombstone-horizon",
        type=float,
        default=horizon.default,
        metavar="SECONDS",
        help=f"{horizon.metadata['help']} (default: {horizon.default})",
    )
    parser.add_argument("--vacuum", action="store_true", help="then rewrite the file smaller")


def _run(what: str, action: Callable[[], str]) -> int:
    try:
        message = action()
    except (ConfigError, StoreError, OSError) as exc:
        print(f"quietsync {what}: {exc}", file=sys.stderr)
        return 2
    print(message, flush=True)
    return 0


def backup(args: argparse.Namespace) -> int:
    return _run(
        "backup",
        lambda: (
            f"backed up {args.db} to {args.dest} (history {backup_database(args.db, args.dest)})"
        ),
    )


def restore(args: argparse.Namespace) -> int:
    def action() -> str:
        history = restore_database(args.backup, args.db)
        return (
            f"restored {args.backup} to {args.db} (history {history}); "
            "replicas will resync on their next pull"
        )

    return _run("restore", action)


def compact(args: argparse.Namespace) -> int:
    def action() -> str:
        removed = compact_database(args.db, args.tombstone_horizon, vacuum=args.vacuum)
        return f"compacted {args.db}: {removed} deleted records removed"

    return _run("compact", action)
