"""Stream switch: N concurrent streamed replies persisted while a view switches threads.

The measurement is `benchmarks.streams` (a real server in a child process,
50 tokens/s per job, flushes every 50 ms): `StreamTracker` mirroring every job
into a replica while a `ChatPane` switches threads every 200 ms, against the
raw baseline (one aiohttp stream per job, one SQLite commit per event) in the
same run. One row per N: tokens persisted per second, persistence lag, and
lost tokens (the replica's content against the provider's reply). No
`SyncClient` runs here, so there is nothing to report or suppress: the
conflict side of streaming is the ``double-writer`` scenario.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.results import ScenarioResult
from benchmarks.streams import measure_raw, measure_tracked, serve_in_child, sizes

__all__ = ["stream_switch"]

QUICK_TOKENS = 25
"""Quick replies are shorter than `benchmarks.streams --quick`: half a second per job."""


async def stream_switch(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """One row per job count N, tracker against the raw baseline on the same server."""
    counts, tokens = sizes(quick)
    if quick:
        tokens = QUICK_TOKENS
    rows = []
    async with serve_in_child(tokens) as url:
        for n in counts:
            raw = await measure_raw(url, n, tokens, tmp / f"raw{n}.db")
            ours = await measure_tracked(url, n, tokens, tmp / f"replica{n}.db")
            ops = n * tokens
            rows.append(
                ScenarioResult(
                    scenario="stream-switch",
                    variant=f"N={n} jobs x {tokens} tokens",
                    ops=ops,
                    seconds=ops / ours["tps"],
                    convergence_s=None,
                    reported=0,
                    suppressed=0,
                    lost=int(ours["lost"]),
                    note=(
                        f"lag p50/p99 {ours['p50']:.0f}/{ours['p99']:.0f} ms, "
                        f"{ours['p99'] / max(raw['p99'], 1.0):.2f}x raw p99 "
                        f"({raw['p99']:.0f} ms); reattach p50 {ours['open']:.1f} ms"
                    ),
                )
            )
    return rows
