"""The seeded fault harness: every seed converges with nothing lost, duplicated, misreported
or leaked across spaces (two users, their private spaces and one shared space), on SQLite
and, for fewer seeds (the suite's time budget), on PostgreSQL.

A failing seed's message ends with the command that replays it, e.g.
``python -m benchmarks.harness --seed 7 --replicas 3 --steps 100``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.harness import Harness, HarnessConfig, HarnessFailure, _Node, replay_command, run
from quietsync.replica.replica import sync_port

SEEDS = range(30)  # issue #16 asks for 30; `python -m benchmarks.harness --seed N` replays any
STEPS = 100  # half the one-user harness's 200, so 30 seeds cost what its 16 did
RESTORING = (12, 16, 27)  # restores are rare (0.6% a step, after a backup): these have some
PG_SEEDS = (*range(6), *RESTORING)  # ~8 s each; `--store postgres --seeds 100` by hand


@pytest.mark.parametrize("seed", SEEDS)
async def test_seed_converges(seed: int):
    stats = await run(HarnessConfig(seed, replicas=3, steps=STEPS))
    assert stats.writes > STEPS // 4 and stats.changes > 0  # the run did real work
    assert 0 < stats.shared_writes < stats.writes  # in the shared space and the private ones


@pytest.mark.parametrize("seed", range(5))
async def test_seed_converges_with_live_loops_running(seed: int):
    """The same faults while every replica also runs its live loop (sockets, pushes on writes,
    membership news on the private socket, 4003 on the shared one)."""
    stats = await run(HarnessConfig(seed, replicas=3, steps=STEPS, live=True))
    assert stats.writes > STEPS // 4 and stats.changes > 0


@pytest.mark.parametrize("seed", PG_SEEDS)
async def test_seed_converges_on_postgres(seed: int, pg_url: str):
    """The same runs on PostgreSQL: SIGKILLed servers on one database, backups with pg_dump
    and restores with pg_restore and a new history id (docs/deploy.md)."""
    config = HarnessConfig(seed, replicas=3, steps=STEPS, store="postgres")
    stats = await run(config, database=pg_url)
    assert stats.writes > STEPS // 4 and stats.changes > 0
    assert stats.restores > 0 or seed not in RESTORING


async def test_seed_converges_on_postgres_with_live_loops_running(pg_url: str):
    """Live loops on PostgreSQL: the sockets are woken through LISTEN/NOTIFY."""
    config = HarnessConfig(0, replicas=3, steps=STEPS, live=True, store="postgres")
    stats = await run(config, database=pg_url)
    assert stats.writes > STEPS // 4 and stats.changes > 0


async def test_the_seeds_together_exercise_every_fault():
    totals = [await run(HarnessConfig(seed, replicas=3, steps=STEPS)) for seed in RESTORING]
    assert sum(s.server_restarts for s in totals) > 0
    assert sum(s.restores for s in totals) > 0  # the server went back to an older backup
    assert sum(s.replica_restarts for s in totals) > 0
    assert sum(s.lost_answers for s in totals) > 0
    assert sum(s.failed_syncs for s in totals) > 0
    assert sum(s.conflicts for s in totals) > 0 and sum(s.suppressed for s in totals) > 0
    assert sum(s.membership_changes for s in totals) > 0
    assert sum(s.set_aside for s in totals) > 0  # writes to a space bob had just lost


class LosingHarness(Harness):
    """A broken client: drops the oldest outbox entry of the private space without pushing it."""

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


def test_a_postgres_run_replays_with_its_store_and_needs_a_database_url(tmp_path: Path):
    config = HarnessConfig(3, replicas=2, steps=60, store="postgres")
    assert replay_command(config).endswith("--steps 60 --store postgres")
    with pytest.raises(ValueError, match="needs a database of its store"):
        Harness(config, tmp_path)  # no URL: a file would be SQLite


class UntoldHarness(Harness):
    """Bob loses the shared space after the last sync, so his replicas never hear of it."""

    async def _settle(self) -> None:
        await super()._settle()
        if "bob" in self.members:
            await self.admin.remove(self.shared, "bob")
            self._members_now(self.members - {"bob"})


async def test_a_replica_holding_a_space_its_user_lost_fails_the_run(tmp_path: Path):
    with pytest.raises(HarnessFailure) as info:
        await UntoldHarness(HarnessConfig(1, replicas=2, steps=40), tmp_path).run()
    assert "replica 1 (bob) holds records of s:" in str(info.value)
