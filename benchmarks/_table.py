"""Shared helpers for benchmarks: timing, the trace loader, and table printing."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["best_of", "load_trace", "print_table"]

# The trace lives in the shared data folder beside the checkout; QUIETSYNC_TRACE overrides.
TRACE_PATH = Path(
    os.environ.get(
        "QUIETSYNC_TRACE",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "automerge-paper.json.gz",
    )
)


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    """The fastest of `repeats` runs, in seconds (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def load_trace(path: Path = TRACE_PATH) -> list[tuple[int, int, str]]:
    """The automerge-paper editing trace as (position, delete_count, insert_text) patches."""
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    return [tuple(patch) for txn in data["txns"] for patch in txn["patches"]]  # type: ignore[misc]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header)), *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(cell: object) -> str:
    if isinstance(cell, float):
        return f"{cell:,.2f}" if cell < 100 else f"{cell:,.0f}"
    if isinstance(cell, int):
        return f"{cell:,}"
    return str(cell)
