"""The automerge-paper editing trace through a replica's public API, against raw pycrdt.

    python -m benchmarks.crdt_trace [--edits N] [--unicode] [--no-sync]

The trace (``../shared/data/automerge-paper.json.gz``: 259,778 keystrokes of
one paper, 104,852 characters at the end) is replayed three ways in one run:

* **quietsync**: ``Replica.text_edits`` once per keystroke, each a durable
  write (WAL, ``synchronous=FULL``) with its outbox entry;
* **raw (a)**: pycrdt alone, one transaction per keystroke, in memory;
* **raw (b)**: pycrdt plus one durable SQLite append of the keystroke's update
  (same WAL and ``synchronous=FULL``) per keystroke: the least a durable
  editor can do.

It prints keystrokes/s and the ratio to each baseline; whether the final text
equals the trace's ``endContent``; the replica file after `Replica.compact`
against the final Yjs state; how the cost grows (time per keystroke over the
last tenth of the trace against the first tenth); and, through a real server
on loopback, the time replica A takes to push everything and the time a fresh
replica B takes to pull the finished document.

``--unicode`` maps the trace's letters to accented, emoji and astral-plane
ones (one code point each, so every position still holds): the same edits
on a text that is not ASCII, where positions must be converted. The raw
baselines convert them the plain way (a ``str`` kept beside the document).

Targets (issue #14): >= 0.5x raw (b); last tenth within 1.5x of the first;
file <= 3x the final state after compaction; B's pull under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pycrdt import Doc, Text

from benchmarks._table import TRACE_PATH, print_table
from quietsync.replica import Replica, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.testing import running_server

__all__ = ["main", "replay_replica", "trace"]

Patch = tuple[int, int, str]
USER, TOKEN = "bench", "bench-token"
# Letters to characters of 2, 3 and 4 UTF-8 bytes; the rest stays ASCII.
UNICODE = str.maketrans("eaoinu", "éäøïñ𝔲") | {ord("t"): "😀", ord("s"): "ş"}


def trace(edits: int | None, unicode: bool) -> tuple[list[Patch], str]:
    """The first `edits` patches of the trace (all if None) and the text they end with."""
    with gzip.open(TRACE_PATH, "rt") as fh:
        data = json.load(fh)
    everything: list[Patch] = [tuple(p) for txn in data["txns"] for p in txn["patches"]]
    patches = everything[:edits]
    if len(patches) == len(everything):
        text = data["endContent"]
    else:  # replayed on a str: fine for a part of the trace
        text = ""
        for pos, n, ins in patches:
            text = text[:pos] + ins + text[pos + n :]
    if unicode:
        patches = [(pos, n, ins.translate(UNICODE)) for pos, n, ins in patches]
        text = text.translate(UNICODE)
    return patches, text


def _timed(patches: Sequence[Patch], step: Callable[[Patch], object]) -> list[float]:
    """Run `step` per patch; the seconds each took."""
    times = []
    clock = time.perf_counter
    for patch in patches:
        start = clock()
        step(patch)
        times.append(clock() - start)
    return times


class _RawDoc:
    """pycrdt as an app would drive it without quietsync: code points to UTF-8 offsets."""

    def __init__(self) -> None:
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.shadow = ""
        self.updates: list[bytes] = []
        self.doc.observe(lambda event: self.updates.append(event.update))

    def edit(self, patch: Patch) -> None:
        pos, n, ins = patch
        shadow = self.shadow
        if shadow.isascii():
            start, end = pos, pos + n
        else:
            start, end = len(shadow[:pos].encode()), len(shadow[: pos + n].encode())
        with self.doc.transaction():
            if n:
                del self.text[start:end]
            if ins:
                self.text.insert(start, ins)
        self.shadow = shadow[:pos] + ins + shadow[pos + n :]


def raw_memory(patches: Sequence[Patch]) -> tuple[list[float], str, int]:
    raw = _RawDoc()
    times = _timed(patches, raw.edit)
    return times, str(raw.text), len(raw.doc.get_update())


def raw_durable(patches: Sequence[Patch], path: Path) -> list[float]:
    raw = _RawDoc()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE updates (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")

    def step(patch: Patch) -> None:
        raw.edit(patch)
        db.execute("BEGIN")
        db.execute("INSERT INTO updates (data) VALUES (?)", (raw.updates.pop(),))
        db.execute("COMMIT")

    try:
        return _timed(patches, step)
    finally:
        db.close()


def replay_replica(patches: Sequence[Patch], replica: Replica) -> list[float]:
    def step(patch: Patch) -> None:
        replica.text_edits("docs", "paper", "body", [patch])

    return _timed(patches, step)


def _file_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))


async def through_server(replica: Replica, tmp: Path, expected: str) -> tuple[float, float, int]:
    """A pushes everything, then a fresh B pulls it: (push s, pull s, pulled bytes of state)."""
    async with running_server(tmp / "server.db", users={USER: TOKEN}) as server:
        pusher = SyncClient(replica, server.url, token=TOKEN)
        start = time.perf_counter()
        try:
            await pusher.push()
        finally:
            await pusher.stop()
        assert replica.pending_count() == 0
        pushed = time.perf_counter() - start
        with Replica.open(tmp / "b.db") as b:
            puller = SyncClient(b, server.url, token=TOKEN)
            start = time.perf_counter()
            try:
                await puller.pull()
            finally:
                await puller.stop()
            pulled = time.perf_counter() - start
            got = (b.get("docs", "paper") or {}).get("body")
            assert got == expected, "B's text differs from the trace's end"
            field = sync_port(b).field_state("docs", "paper", "body")
            state = b"" if field is None else field.state or b""
    return pushed, pulled, len(state)


def _per_edit_us(times: Sequence[float]) -> float:
    return sum(times) / len(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=None, help="first N keystrokes (all)")
    parser.add_argument("--unicode", action="store_true", help="non-ASCII letters")
    parser.add_argument("--no-sync", action="store_true", help="skip the server part")
    args = parser.parse_args(argv)
    patches, expected = trace(args.edits, args.unicode)
    n = len(patches)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t_mem, raw_text, raw_state = raw_memory(patches)
        assert raw_text == expected, "raw pycrdt does not reproduce the trace"
        t_dur = raw_durable(patches, tmp / "raw.db")
        with Replica.open(tmp / "a.db", node_id="a") as replica:
            t_rep = replay_replica(patches, replica)
            text = (replica.get("docs", "paper") or {}).get("body")
            before_compact = _file_bytes(tmp / "a.db")
            sync = None if args.no_sync else asyncio.run(through_server(replica, tmp, expected))
            replica.compact()
            after_compact = _file_bytes(tmp / "a.db")
        tenth = max(1, n // 10)
        growth = _per_edit_us(t_rep[-tenth:]) / _per_edit_us(t_rep[:tenth])
        raw_growth = _per_edit_us(t_dur[-tenth:]) / _per_edit_us(t_dur[:tenth])
        rows: list[list[object]] = [
            ["keystrokes/s, quietsync", n / sum(t_rep), "", ""],
            ["keystrokes/s, raw (a) pycrdt in memory", n / sum(t_mem), "", ""],
            ["keystrokes/s, raw (b) pycrdt + durable append", n / sum(t_dur), "", ""],
            ["ratio to raw (a)", sum(t_mem) / sum(t_rep), "", ""],
            ["ratio to raw (b)", sum(t_dur) / sum(t_rep), ">= 0.5", ""],
            [
                "last tenth / first tenth, per keystroke",
                growth,
                "<= 1.5",
                f"raw (b): {raw_growth:.2f}",
            ],
            [
                "final text equals endContent",
                str(text == expected),
                "True",
                f"{len(expected):,} chars",
            ],
            ["replica file before compact (bytes)", before_compact, "", ""],
            ["replica file after compact (bytes)", after_compact, "", ""],
            ["final Yjs state (bytes)", raw_state, "", ""],
            ["file / state", after_compact / raw_state, "<= 3", ""],
        ]
        if sync is not None:
            pushed, pulled, state = sync
            rows += [
                ["A pushes everything (s)", pushed, "", f"{n:,} writes"],
                ["B pulls the finished document (s)", pulled, "< 2", f"{state:,} bytes of state"],
            ]
    title = f"automerge-paper trace, {n:,} keystrokes{' (unicode)' if args.unicode else ''}"
    print_table(title, ["measure", "value", "target", "note"], rows)
    return 0 if text == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
