"""`python -m benchmarks.sync_e2e --workers 2` end to end, small: a subprocess on a real
PostgreSQL, as a developer runs it. Its table's rows are checked, never its timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    "changes/s, batch 1,000, A -> B",
    "replica latency p50 (ms), A -> B",
    "push -> socket p50 (ms): across workers | same worker",
    "push -> socket p99 (ms): across workers | same worker, worker 2 busy",
    "bare asyncpg commit of one row p50 (ms), the floor",
]


def test_the_workers_benchmark_prints_every_row(pg_admin: str | None) -> None:
    if pg_admin is None:
        pytest.skip("no PostgreSQL (see tests/pg.py)")
    args = ["--workers", "2", "--changes", "200", "--latency-samples", "10", "--pg-dsn", pg_admin]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sync_e2e", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any("quietsync serve --workers 2 vs one process" in line for line in lines)
    for row in ROWS:
        assert any(line.startswith(row) for line in lines), (row, proc.stdout)
