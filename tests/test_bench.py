"""`python -m benchmarks --quick` end to end: a subprocess, as a developer runs it.

One run of the whole quick suite serves every test here (module fixture): the
exit status, the table's key lines, every scenario in the JSON, no data lost,
and the conflict counts each scenario exists to show. Timings are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from benchmarks.suite import SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
ISSUE_ORDER = [
    "identical-writes",
    "divergent-writes",
    "offline-storm",
    "stream-switch",
    "double-writer",
    "crdt-text",
    "throughput",
    "crdt-trace",
    "spaces-partial",
]


@attrs.frozen
class BenchRun:
    returncode: int
    stdout: str
    stderr: str
    rows: list[dict[str, Any]]
    quick: bool

    def scenario(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["scenario"] == name]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = _bench("--quick", "--json", str(out))
    payload = json.loads(out.read_text()) if out.exists() else {"quick": None, "results": []}
    return BenchRun(proc.returncode, proc.stdout, proc.stderr, payload["results"], payload["quick"])


def test_registry_keeps_the_issue_order() -> None:
    assert list(SCENARIOS) == ISSUE_ORDER


def test_quick_suite_exits_0_and_prints_one_table(quick_run: BenchRun) -> None:
    assert quick_run.returncode == 0, quick_run.stderr[-3000:]
    lines = quick_run.stdout.splitlines()
    assert "quietsync bench (real server on loopback, real SQLite replicas)" in lines
    header = next(line for line in lines if line.startswith("scenario"))
    for column in ("variant", "ops/s", "converge s", "reported", "suppressed", "lost", "note"):
        assert column in header
    for name in ISSUE_ORDER:
        assert any(line.startswith(name + " ") for line in lines), name
    assert "DATA LOST" not in quick_run.stdout


def test_json_has_every_scenario_and_no_lost_data(quick_run: BenchRun) -> None:
    assert quick_run.quick is True
    assert {r["scenario"] for r in quick_run.rows} == set(ISSUE_ORDER)
    for row in quick_run.rows:
        assert row["lost"] == 0, row
        if not row["note"].startswith("trace not found"):  # a checkout without ../shared/data
            assert row["ops"] > 0 and row["seconds"] > 0, row


def test_stream_switch_has_one_row_per_job_count(quick_run: BenchRun) -> None:
    variants = [r["variant"] for r in quick_run.scenario("stream-switch")]
    assert [v.split()[0] for v in variants] == ["N=1", "N=10"]


def test_double_writer_shows_conflicts_then_suppression_then_nothing(quick_run: BenchRun) -> None:
    off, on, mirror = quick_run.scenario("double-writer")
    assert off["reported"] > 0 and off["suppressed"] == 0
    assert on["reported"] == 0 and on["suppressed"] == off["reported"]
    assert mirror["reported"] == 0 and mirror["suppressed"] == 0
    assert off["ops"] == on["ops"] == mirror["ops"]  # same job, same content writes
    pushed = int(off["note"].split()[0])
    assert off["reported"] == pushed  # one conflict per pushed write


def test_collision_scenarios_report_what_the_issue_expects(quick_run: BenchRun) -> None:
    (identical,) = quick_run.scenario("identical-writes")
    assert identical["reported"] == 0 and identical["suppressed"] > 0
    (divergent,) = quick_run.scenario("divergent-writes")
    assert divergent["reported"] > 0 and divergent["suppressed"] == 0


def test_throughput_rows_compare_against_raw_baselines(quick_run: BenchRun) -> None:
    rows = quick_run.scenario("throughput")
    assert [r["variant"].split()[0] for r in rows] == ["put", "put_many", "sync"]
    for row in rows:
        assert "x " in row["note"], row  # "<ratio>x <baseline> (<raw rate>/s)"


def test_spaces_partial_one_space_of_ten_costs_a_tenth_of_the_bytes(quick_run: BenchRun) -> None:
    (row,) = quick_run.scenario("spaces-partial")
    assert row["variant"].startswith("1 of 11 spaces vs all (10 x 100 records)")
    assert row["lost"] == 0 and row["ops"] == 1000  # each replica holds exactly its spaces
    ratio = float(row["note"].split("x ")[0])  # "<one/all bytes>x the bytes of all ..."
    assert 0.08 < ratio < 0.12  # 10 equal shared spaces and an empty private one


def test_unknown_scenario_is_refused_before_running_anything(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench("no-such-scenario", "--json", str(out))
    assert proc.returncode == 2
    assert "no-such-scenario" in proc.stderr
    assert not out.exists()
