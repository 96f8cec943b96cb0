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

quietsync and raw (b) take turns, 2,000 keystrokes each, so the machine's
load falls on both alike.

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

import attrs
from pycrdt import Doc, Text

from benchmarks._table import TRACE_PATH, print_table
from benchmarks.results import ScenarioResult
from quietsync.replica import Replica, SyncClient
from quietsync.replica.replica import sync_port
from quietsync.testing import running_server

__all__ = ["SyncRun", "TraceRun", "main", "replay", "trace", "trace_scenario"]

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


def _interleaved(
    patches: Sequence[Patch], steps: Sequence[Callable[[Patch], object]], chunk: int = 2000
) -> list[list[float]]:
    """Replay `patches` through every step, `chunk` patches at a time, taking turns.

    This machine is shared: load that comes and goes in the middle of a run
    lands on both sides of a ratio instead of on whichever ran then.
    """
    times: list[list[float]] = [[] for _ in steps]
    for n, start in enumerate(range(0, len(patches), chunk)):
        part = patches[start : start + chunk]
        order = range(len(steps)) if n % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            times[i] += _timed(part, steps[i])
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


class _RawDurable:
    """Raw (b): `_RawDoc` plus one durable SQLite append per keystroke."""

    def __init__(self, path: Path) -> None:
        self.raw = _RawDoc()
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("CREATE TABLE updates (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")

    def edit(self, patch: Patch) -> None:
        self.raw.edit(patch)
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO updates (data) VALUES (?)", (self.raw.updates.pop(),))
        self.db.execute("COMMIT")


def _replica_edit(replica: Replica) -> Callable[[Patch], None]:
    def step(patch: Patch) -> None:
        replica.text_edits("docs", "paper", "body", [patch])

    return step


def _file_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))


@attrs.frozen
class SyncRun:
    """The trace through a real server: A pushes everything, then a fresh B pulls it."""

    pushed: float  # seconds A takes to push every keystroke
    pulled: float  # seconds B takes to pull the finished document
    server_bytes: int  # the field's state as the server stores it
    pulled_bytes: int  # the field's state in B after the pull


async def through_server(replica: Replica, tmp: Path, expected: str) -> SyncRun:
    """A pushes everything, then a fresh B pulls it."""
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
        server_bytes = _server_state_bytes(tmp / "server.db")
    return SyncRun(pushed, pulled, server_bytes, len(state))


def _server_state_bytes(path: Path) -> int:
    """The size of the paper's state in the server's database (read beside the server)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT length(state) FROM fields WHERE collection = 'docs' AND field = 'body'"
        ).fetchone()
    finally:
        db.close()
    return 0 if row is None else int(row[0])


def _per_edit_us(times: Sequence[float]) -> float:
    return sum(times) / len(times) * 1e6


@attrs.frozen
class TraceRun:
    """What one replay measured (seconds per keystroke for each side)."""

    keystrokes: int
    memory: list[float]  # raw (a)
    durable: list[float]  # raw (b)
    replica: list[float]
    text_ok: bool
    file_before_compact: int
    file_after_compact: int
    state_bytes: int  # raw (a)'s final Yjs state
    unpushed: int  # outbox entries left when the file was measured
    sync: SyncRun | None

    @property
    def ratio_b(self) -> float:
        return sum(self.durable) / sum(self.replica)

    def growth(self, times: Sequence[float]) -> float:
        """Time per keystroke over the last tenth against the first tenth."""
        tenth = max(1, len(times) // 10)
        return _per_edit_us(times[-tenth:]) / _per_edit_us(times[:tenth])


async def replay(patches: Sequence[Patch], expected: str, tmp: Path, *, sync: bool) -> TraceRun:
    """Replay the trace three ways (see the module docstring) in `tmp`."""
    t_mem, raw_text, raw_state = raw_memory(patches)
    assert raw_text == expected, "raw pycrdt does not reproduce the trace"
    raw_b = _RawDurable(tmp / "raw.db")
    with Replica.open(tmp / "a.db", node_id="a") as replica:
        try:
            t_dur, t_rep = _interleaved(patches, [raw_b.edit, _replica_edit(replica)])
        finally:
            raw_b.db.close()
        text = (replica.get("docs", "paper") or {}).get("body")
        before_compact = _file_bytes(tmp / "a.db")
        synced = await through_server(replica, tmp, expected) if sync else None
        replica.compact()
        return TraceRun(
            keystrokes=len(patches),
            memory=t_mem,
            durable=t_dur,
            replica=t_rep,
            text_ok=text == expected,
            file_before_compact=before_compact,
            file_after_compact=_file_bytes(tmp / "a.db"),
            state_bytes=raw_state,
            unpushed=replica.pending_count(),
            sync=synced,
        )


def print_run(run: TraceRun, title: str, expected_chars: int) -> None:
    n = run.keystrokes
    rows: list[list[object]] = [
        ["keystrokes/s, quietsync", n / sum(run.replica), "", ""],
        ["keystrokes/s, raw (a) pycrdt in memory", n / sum(run.memory), "", ""],
        ["keystrokes/s, raw (b) pycrdt + durable append", n / sum(run.durable), "", ""],
        ["ratio to raw (a)", sum(run.memory) / sum(run.replica), "", ""],
        ["ratio to raw (b)", run.ratio_b, ">= 0.5", ""],
        [
            "last tenth / first tenth, per keystroke",
            run.growth(run.replica),
            "<= 1.5",
            f"raw (b): {run.growth(run.durable):.2f}",
        ],
        ["final text equals endContent", str(run.text_ok), "True", f"{expected_chars:,} chars"],
        ["replica file before compact (bytes)", run.file_before_compact, "", ""],
        ["replica file after compact (bytes)", run.file_after_compact, "", ""],
        ["final Yjs state (bytes)", run.state_bytes, "", ""],
        [
            "file / state",
            run.file_after_compact / run.state_bytes,
            "<= 3",
            f"{run.unpushed:,} writes not pushed" if run.unpushed else "",
        ],
    ]
    if run.sync is not None:
        synced = run.sync
        rows += [
            ["A pushes everything (s)", synced.pushed, "", f"{n:,} writes"],
            ["server's state of the field (bytes)", synced.server_bytes, "", ""],
            ["server's state / final Yjs state", synced.server_bytes / run.state_bytes, "", ""],
            [
                "B pulls the finished document (s)",
                synced.pulled,
                "< 2",
                f"{synced.pulled_bytes:,} bytes of state",
            ],
        ]
    print_table(title, ["measure", "value", "target", "note"], rows)


async def trace_scenario(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """The `python -m benchmarks` row: the trace's first keystrokes, synced."""
    if not TRACE_PATH.exists():  # the trace lives beside the checkout, not in it
        missing = f"trace not found at {TRACE_PATH} (set QUIETSYNC_TRACE)"
        return [ScenarioResult("crdt-trace", "automerge-paper", 0, 0.0, None, 0, 0, 0, missing)]
    patches, expected = trace(5_000 if quick else 50_000, unicode=True)
    run = await replay(patches, expected, tmp, sync=True)
    assert run.sync is not None
    pushed, pulled = run.sync.pushed, run.sync.pulled
    return [
        ScenarioResult(
            scenario="crdt-trace",
            variant=f"automerge-paper, first {run.keystrokes:,} keystrokes (unicode)",
            ops=run.keystrokes,
            seconds=sum(run.replica),
            convergence_s=pulled,
            reported=0,
            suppressed=0,
            lost=0 if run.text_ok else 1,
            note=(
                f"{run.ratio_b:.2f}x raw pycrdt + durable append; "
                f"last/first tenth {run.growth(run.replica):.2f}; "
                f"file {run.file_after_compact / run.state_bytes:.1f}x state; push {pushed:.1f} s"
            ),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=None, help="first N keystrokes (all)")
    parser.add_argument("--unicode", action="store_true", help="non-ASCII letters")
    parser.add_argument("--no-sync", action="store_true", help="skip the server part")
    args = parser.parse_args(argv)
    patches, expected = trace(args.edits, args.unicode)
    with tempfile.TemporaryDirectory() as tmp_name:
        run = asyncio.run(replay(patches, expected, Path(tmp_name), sync=not args.no_sync))
    unicode = " (unicode)" if args.unicode else ""
    print_run(run, f"automerge-paper trace, {run.keystrokes:,} keystrokes{unicode}", len(expected))
    return 0 if run.text_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
