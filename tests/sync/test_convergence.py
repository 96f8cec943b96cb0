"""The seeded fault harness: every seed converges with nothing lost, duplicated or misreported.

A failing seed's message ends with the command that replays it, e.g.
``python -m benchmarks.harness --seed 7 --replicas 3 --steps 200``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.harness import Harness, HarnessConfig, HarnessFailure, _Node, run
from quietsync.replica.replica import sync_port

SEEDS = range(16)  # the suite budget; `python -m benchmarks.harness --seed N` replays any other


@pytest.mark.parametrize("seed", SEEDS)
async def test_seed_converges(seed: int):
    stats = await run(HarnessConfig(seed, replicas=3, steps=200))
    assert stats.writes > 50 and stats.changes > 0  # the run did real work


@pytest.mark.parametrize("seed", range(5))
async def test_seed_converges_with_live_loops_running(seed: int):
    """The same faults while every replica also runs its live loop (socket, pushes on writes)."""
    stats = await run(HarnessConfig(seed, replicas=3, steps=200, live=True))
    assert stats.writes > 50 and stats.changes > 0


async def test_the_seeds_together_exercise_every_fault():
    totals = [await run(HarnessConfig(seed, replicas=3, steps=200)) for seed in range(3)]
    assert sum(s.server_restarts for s in totals) > 0
    assert sum(s.restores for s in totals) > 0  # the server went back to an older backup
    assert sum(s.replica_restarts for s in totals) > 0
    assert sum(s.lost_answers for s in totals) > 0
    assert sum(s.failed_syncs for s in totals) > 0
    assert sum(s.conflicts for s in totals) > 0 and sum(s.suppressed for s in totals) > 0


class LosingHarness(Harness):
    """A broken client: drops the oldest outbox entry without pushing it."""

    def _write(self, node: _Node, roll: float) -> None:
        super()._write(node, roll)
        sync_port(node.replica).mark_pushed([m.id for m in sync_port(node.replica).outbox_batch(1)])


async def test_a_lost_write_fails_the_run_with_the_replay_command(tmp_path: Path):
    config = HarnessConfig(3, replicas=2, steps=60)
    with pytest.raises(HarnessFailure) as info:
        await LosingHarness(config, tmp_path).run()
    message = str(info.value)
    assert "lost" in message
    assert message.endswith("python -m benchmarks.harness --seed 3 --replicas 2 --steps 60")
