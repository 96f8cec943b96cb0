"""Merge-core throughput against raw baselines, measured in the same run.

* `merge_field` (LWW with conflict detection and suppression) vs a bare
  ``max()`` over ``(stamp_tuple, value)`` pairs: what the bookkeeping costs.
* `CrdtText.apply` (validation, pending-struct recovery) vs raw
  ``pycrdt.Doc.apply_update`` for the updates of the automerge-paper trace.

Run: ``python -m benchmarks.merge_core [--edits N]``.
"""

from __future__ import annotations

import argparse
import random

from pycrdt import Doc, Text

from benchmarks._table import best_of, load_trace, print_table
from quietsync.conflicts import HLC, CrdtText, FieldRef, FieldWrite, merge_field

__all__ = ["main"]

REF = FieldRef("docs", "d1", "title")


def _lww_workload(n: int) -> list[FieldWrite]:
    rng = random.Random(7)
    nodes = ["a", "b", "c", "d"]
    writes = []
    for i in range(n):
        stamp = HLC(1_700_000_000_000 + rng.randrange(n), rng.randrange(4), rng.choice(nodes))
        base = None if rng.random() < 0.5 else HLC(1_700_000_000_000 + i // 2, 0, "a")
        writes.append(FieldWrite(rng.choice(["x", "y", "same"]), stamp, base))
    return writes


def bench_lww(n: int) -> tuple[float, float]:
    writes = _lww_workload(n)
    pairs = [((w.stamp.wall_ms, w.stamp.counter, w.stamp.node), w.value) for w in writes]

    def raw() -> None:
        best = pairs[0]
        for pair in pairs:
            best = max(best, pair, key=lambda p: p[0])

    def ours() -> None:
        state = None
        for write in writes:
            state = merge_field(state, write, ref=REF).state

    return best_of(5, raw), best_of(5, ours)


def _trace_updates(edits: int) -> list[bytes]:
    source = CrdtText()
    updates = []
    for pos, delete, insert in load_trace()[:edits]:
        if delete:
            updates.append(source.delete(pos, delete))
        if insert:
            updates.append(source.insert(pos, insert))
    return updates


def bench_crdt(edits: int) -> tuple[float, float, int]:
    updates = _trace_updates(edits)

    def raw() -> None:
        doc = Doc()
        doc["text"] = Text()
        for update in updates:
            doc.apply_update(update)

    def ours() -> None:
        text = CrdtText()
        for update in updates:
            text.apply(update)

    return best_of(3, raw), best_of(3, ours), len(updates)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=100_000, help="LWW writes to merge")
    parser.add_argument("--edits", type=int, default=50_000, help="trace edits to apply")
    args = parser.parse_args(argv)

    raw_lww, ours_lww = bench_lww(args.writes)
    raw_crdt, ours_crdt, n_updates = bench_crdt(args.edits)
    print_table(
        "merge core vs raw baselines (best of runs; ratio = ours/raw throughput)",
        ["operation", "n", "raw ops/s", "quietsync ops/s", "ratio"],
        [
            [
                "merge_field vs max()",
                args.writes,
                args.writes / raw_lww,
                args.writes / ours_lww,
                raw_lww / ours_lww,
            ],
            [
                "CrdtText.apply vs Doc.apply_update",
                n_updates,
                n_updates / raw_crdt,
                n_updates / ours_crdt,
                raw_crdt / ours_crdt,
            ],
        ],
    )


if __name__ == "__main__":
    main()
