"""What a benchmark scenario reports, and how a run is printed and saved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from benchmarks._table import print_table

__all__ = ["ScenarioResult", "print_results", "write_json"]


@attrs.frozen
class ScenarioResult:
    """One row of the scenario table (`python -m benchmarks`).

    `ops` operations took `seconds` (throughput = ops / seconds); `convergence_s`
    is the time from reconnect until every replica equals the server;
    `reported` and `suppressed` count conflict events; `lost` counts
    acknowledged writes that vanished without being the final value, an
    identical one, or a reported conflict's loser. It must be 0.
    """

    scenario: str
    variant: str
    ops: int
    seconds: float
    convergence_s: float | None
    reported: int
    suppressed: int
    lost: int
    note: str = ""

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "throughput": self.throughput}


def print_results(results: Sequence[ScenarioResult]) -> None:
    print_table(
        "quietsync bench (real server on loopback, real SQLite replicas)",
        [
            "scenario",
            "variant",
            "ops",
            "ops/s",
            "converge s",
            "reported",
            "suppressed",
            "lost",
            "note",
        ],
        [
            [
                r.scenario,
                r.variant,
                r.ops,
                r.throughput,
                "-" if r.convergence_s is None else r.convergence_s,
                r.reported,
                r.suppressed,
                r.lost,
                r.note,
            ]
            for r in results
        ],
    )


def write_json(path: Path, results: Sequence[ScenarioResult], *, quick: bool) -> None:
    payload = {"quick": quick, "results": [r.to_json() for r in results]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
