"""Local write and query throughput of `Replica` against raw sqlite3, same file settings.

Both sides run in the same process on fresh files in one temporary directory,
with the replica's durability settings (WAL, ``synchronous=FULL``):

* ``put``: one record (3 fields) per transaction, against a raw one-row
  ``INSERT OR REPLACE`` transaction of the same record as one JSON row;
* ``put_many``: 1,000 records in one transaction, against what an app would
  do with raw sqlite3: ``json.dumps`` each record and one ``executemany`` of
  the 1,000 JSON rows (the ``put`` baseline encodes its record too); for
  information, also against the ``executemany`` of rows encoded beforehand;
* ``query``: one thread's 1,000 messages, ordered, out of 100,000 records.

The replica does more per write than the raw baseline (per-field stamps, an
outbox row per record, change events); the ratios say what that costs. Ratios are raw
time / replica time, so 1.0 means "as fast as raw".

Run: ``python -m benchmarks.local_writes [--puts N] [--records N]``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from quietsync.replica import Replica

__all__ = ["bench_put", "bench_put_many", "main", "run"]

THREAD_SIZE = 1_000


def _message(i: int) -> dict[str, object]:
    return {"thread_id": f"t{i // THREAD_SIZE}", "pos": i % THREAD_SIZE, "body": f"message {i}"}


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE records (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
    return conn


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_put(tmp: Path, n: int) -> tuple[float, float]:
    """Seconds per single-record transaction: raw sqlite3, then `Replica.put`."""
    conn = _raw(tmp / "raw-put.db")

    def raw() -> None:
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?)", (f"m{i}", json.dumps(_message(i)))
            )
            conn.execute("COMMIT")

    raw_s = _timed(raw)
    conn.close()
    with Replica.open(tmp / "put.db") as replica:
        ours_s = _timed(lambda: [replica.put("messages", f"m{i}", _message(i)) for i in range(n)])
    return raw_s / n, ours_s / n


def bench_put_many(tmp: Path, rounds: int) -> tuple[float, float, float]:
    """Median seconds per 1,000 records: raw (encode + insert), raw insert only, `put_many`."""
    raw_times, insert_times, our_times = [], [], []
    conn = _raw(tmp / "raw-many.db")
    with Replica.open(tmp / "many.db") as replica:
        for r in range(rounds):
            batch = {f"m{i}": _message(i) for i in range(r * 1_000, (r + 1) * 1_000)}
            raw_times.append(_timed(_raw_batch, conn, batch))
            encoded = [(f"{key}-pre", json.dumps(record)) for key, record in batch.items()]
            insert_times.append(_timed(_raw_insert, conn, encoded))
            our_times.append(_timed(replica.put_many, "messages", batch))
    conn.close()
    return tuple(statistics.median(t) for t in (raw_times, insert_times, our_times))  # type: ignore[return-value]


_RAW_INSERT = "INSERT OR REPLACE INTO records VALUES (?, ?)"


def _raw_batch(conn: sqlite3.Connection, batch: dict[str, dict[str, object]]) -> None:
    """What an app does with raw sqlite3: encode each record, insert them all, commit."""
    _raw_insert(conn, [(key, json.dumps(record)) for key, record in batch.items()])


def _raw_insert(conn: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(_RAW_INSERT, rows)
    conn.execute("COMMIT")


def bench_query(tmp: Path, records: int, repeats: int) -> float:
    with Replica.open(tmp / "query.db") as replica:
        for start in range(0, records, 10_000):
            ids = range(start, min(start + 10_000, records))
            replica.put_many("messages", {f"m{i}": _message(i) for i in ids})
        threads = records // THREAD_SIZE
        times = []
        for r in range(repeats):
            thread = f"t{(r * 37) % threads}"

            def query(thread: str = thread) -> None:
                rows = replica.query("messages", where={"thread_id": thread}, order_by="pos")
                assert len(rows) == THREAD_SIZE and rows[0]["pos"] == 0

            times.append(_timed(query))
    return statistics.median(times)


def run(puts: int = 1_000, records: int = 100_000, rounds: int = 15) -> list[tuple[str, ...]]:
    """Run all three; return table rows (name, raw, replica, ratio, target)."""
    with tempfile.TemporaryDirectory(prefix="quietsync-bench-") as tmp:
        raw_put, our_put = bench_put(Path(tmp), puts)
        raw_many, raw_insert, our_many = bench_put_many(Path(tmp), rounds)
        query_s = bench_query(Path(tmp), records, 20)
    return [
        ("put (1 record/txn)", f"{raw_put * 1e3:.3f} ms", f"{our_put * 1e3:.3f} ms",
         f"{raw_put / our_put:.2f}x", ">= 0.5x"),
        ("put_many (1,000 records)", f"{raw_many * 1e3:.2f} ms", f"{our_many * 1e3:.2f} ms",
         f"{raw_many / our_many:.2f}x", ">= 0.4x"),
        ("  raw without encoding", f"{raw_insert * 1e3:.2f} ms", f"{our_many * 1e3:.2f} ms",
         f"{raw_insert / our_many:.2f}x", "(info)"),
        (f"query 1 thread of {records:,}", "-", f"{query_s * 1e3:.2f} ms", "-", "< 10 ms"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=1_000, help="single puts to time")
    parser.add_argument("--records", type=int, default=100_000, help="records for the query")
    args = parser.parse_args(argv)
    rows = run(args.puts, args.records)
    header = ("benchmark", "raw sqlite3", "replica", "ratio", "target")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print("(WAL, synchronous=FULL on both sides; ratio = raw time / replica time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
