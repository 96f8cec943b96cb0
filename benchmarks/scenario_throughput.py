"""Throughput: local writes and end-to-end sync against their raw baselines.

The measurements are `benchmarks.local_writes` (`Replica.put` / `put_many`
against raw sqlite3 with the same durability settings) and
`benchmarks.sync_e2e` (replica A -> server -> replica B against a bare
aiohttp + SQLite skeleton doing the same trip), both sides in the same run.
The note carries the ratio: raw time / quietsync time, 1.0 = as fast as raw.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.local_writes import bench_put, bench_put_many
from benchmarks.results import ScenarioResult
from benchmarks.sync_e2e import batch_rates, pairs

__all__ = ["throughput"]

BATCH = 1_000


def _row(
    variant: str, ops: int, seconds: float, raw_seconds: float, baseline: str
) -> ScenarioResult:
    return ScenarioResult(
        scenario="throughput",
        variant=variant,
        ops=ops,
        seconds=seconds,
        convergence_s=None,
        reported=0,
        suppressed=0,
        lost=0,
        note=f"{raw_seconds / seconds:.2f}x {baseline} ({ops / raw_seconds:,.0f}/s)",
    )


async def throughput(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """put, put_many and sync end to end, each against its raw baseline in this run."""
    puts, rounds, changes = (300, 2, 2_000) if quick else (2_000, 5, 20_000)
    raw_put, our_put = bench_put(tmp, puts)
    raw_many, _, our_many = bench_put_many(tmp, rounds)
    async with pairs(tmp) as (ours, base):
        q, s = await batch_rates(ours, base, BATCH, changes)
    return [
        _row("put vs raw sqlite3", puts, our_put * puts, raw_put * puts, "raw sqlite3"),
        _row(f"put_many x{BATCH:,} vs raw", BATCH, our_many, raw_many, "raw dumps+executemany"),
        _row(
            f"sync e2e batch {BATCH:,} vs skeleton",
            changes,
            changes / q,
            changes / s,
            "bare skeleton",
        ),
    ]
