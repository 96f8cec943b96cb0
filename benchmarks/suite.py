"""``python -m benchmarks``: the conflict-scenario suite, one table for the whole run.

Every scenario runs against a real server on loopback and real replica files in
a fresh temporary directory, and returns `ScenarioResult` rows. ``--quick``
shrinks every scenario so the whole suite finishes in under a minute.

The benchmarks live in the repository, not in the wheel: they compare quietsync
with raw baselines and a bare skeleton server, which are tools for the people
who change quietsync, not for the apps that embed it. Run them from a checkout
(``pip install -e '.[dev]'``, then ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from benchmarks.crdt_trace import trace_scenario
from benchmarks.progress import Progress
from benchmarks.results import ScenarioResult, print_results, write_json
from benchmarks.scenario_crdt import crdt_text
from benchmarks.scenario_double_writer import double_writer
from benchmarks.scenario_streams import stream_switch
from benchmarks.scenario_throughput import throughput
from benchmarks.scenarios_writes import divergent_writes, identical_writes, offline_storm
from benchmarks.spaces_partial import spaces_scenario

__all__ = ["SCENARIOS", "bench", "build_parser", "main", "run_scenarios"]

Scenario = Callable[..., Awaitable[list[ScenarioResult]]]
"""scenario(tmp_dir, *, quick) -> rows."""

SCENARIOS: dict[str, Scenario] = {
    "identical-writes": identical_writes,
    "divergent-writes": divergent_writes,
    "offline-storm": offline_storm,
    "stream-switch": stream_switch,
    "double-writer": double_writer,
    "crdt-text": crdt_text,
    "throughput": throughput,
    "crdt-trace": trace_scenario,
    "spaces-partial": spaces_scenario,
}


async def run_scenarios(
    names: Sequence[str], *, quick: bool, progress: Progress | None = None
) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    for name in names:
        if progress is not None:
            progress.start(name)
        with tempfile.TemporaryDirectory(prefix=f"quietsync-bench-{name}-") as tmp:
            results.extend(await SCENARIOS[name](Path(tmp), quick=quick))
        if progress is not None:
            progress.advance()
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run benchmark scenarios against a real server and real replica files, "
        "and print one table.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run (default: all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    return parser


def bench(args: argparse.Namespace) -> int:
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        known = ", ".join(SCENARIOS)
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {known}", file=sys.stderr)
        return 2
    names = args.scenarios or list(SCENARIOS)
    # The scenarios run servers in this process: their per-request access log and
    # lifecycle lines would bury the progress bar and the table.
    for noisy in ("aiohttp.access", "quietsync"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    progress = Progress(len(names))
    try:
        results = asyncio.run(run_scenarios(names, quick=args.quick, progress=progress))
    finally:
        progress.close()
    print_results(results)
    if args.json is not None:
        write_json(args.json, results, quick=args.quick)
    lost = sum(r.lost for r in results)
    if lost:
        print(f"\nDATA LOST: {lost} acknowledged writes are unaccounted for")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return bench(build_parser().parse_args(argv))
