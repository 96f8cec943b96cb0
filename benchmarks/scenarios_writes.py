"""Write-collision scenarios: identical writes, divergent writes, an offline storm.

Each runs K real replica files against a real server on loopback. Replicas
write while offline (no sync), then sync; the scenario measures how long the
reconnect takes, checks that every replica equals the server, and accounts
for every acknowledged write: it must be the final value, identical to it
(suppressed), or a reported conflict's loser. Anything else is lost data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from benchmarks.results import ScenarioResult
from quietsync.conflicts import HLC, canonical_equal
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port
from quietsync.replica.sync_client import SyncClient
from quietsync.testing import running_server

__all__ = ["divergent_writes", "identical_writes", "offline_storm"]

USER = "bench"
COLLECTION = "tasks"
FIELDS = ("title", "priority")

ValueFor = Callable[[int, int, str], Any]
"""value_for(replica index, record index, field) -> the value that replica writes."""


@attrs.frozen
class _Write:
    key: str
    field: str
    value: Any
    stamp: HLC


async def _run_collision(
    tmp: Path,
    *,
    scenario: str,
    replicas: int,
    records: int,
    value_for: ValueFor,
    concurrent_reconnect: bool = False,
) -> ScenarioResult:
    async with running_server(tmp / "server.db", users={USER: "bench-token"}) as server:
        nodes = [Replica.open(tmp / f"replica{i}.db", node_id=f"r{i}") for i in range(replicas)]
        try:
            writes = _write_offline(nodes, records, value_for)
            clients = [SyncClient(r, server.url, token=server.token(USER)) for r in nodes]
            try:
                started = time.perf_counter()
                if concurrent_reconnect:
                    await asyncio.gather(*(c.sync_once() for c in clients))
                else:
                    for client in clients:
                        await client.sync_once()
                pushed = time.perf_counter() - started
                for client in clients:  # everyone pulls what the others pushed
                    await client.sync_once()
                converged = time.perf_counter() - started
            finally:
                for client in clients:
                    await client.stop()
            return _account(scenario, nodes, writes, pushed, converged)
        finally:
            for node in nodes:
                node.close()


def _write_offline(nodes: list[Replica], records: int, value_for: ValueFor) -> list[_Write]:
    """Every replica writes every record (same keys, so every field collides)."""
    writes = []
    for i, node in enumerate(nodes):
        batch = {f"t{n}": {f: value_for(i, n, f) for f in FIELDS} for n in range(records)}
        node.put_many(COLLECTION, batch)
        for key in batch:
            for field in FIELDS:
                state = sync_port(node).field_state(COLLECTION, key, field)
                assert state is not None
                writes.append(_Write(key, field, state.write.value, state.write.stamp))
    return writes


def _account(
    scenario: str, nodes: list[Replica], writes: list[_Write], pushed: float, converged: float
) -> ScenarioResult:
    reference = nodes[0]
    diverged = sum(
        1
        for node in nodes[1:]
        for key in reference.keys(COLLECTION)
        if node.get(COLLECTION, key) != reference.get(COLLECTION, key)
    )
    losers = {(c.key, c.field, c.loser.stamp) for node in nodes for c in node.conflicts()}
    reported = len(losers)
    suppressed = sum(node.suppressed_count() for node in nodes)
    lost = 0
    for w in writes:
        final = sync_port(reference).field_state(COLLECTION, w.key, w.field)
        assert final is not None
        kept = final.write.stamp == w.stamp or canonical_equal(final.write.value, w.value)
        if not kept and (w.key, w.field, w.stamp) not in losers:
            lost += 1
    return ScenarioResult(
        scenario=scenario,
        variant=f"{len(nodes)} replicas",
        ops=len(writes),
        seconds=pushed,
        convergence_s=converged,
        reported=reported,
        suppressed=suppressed,
        lost=lost + diverged,
        note="" if diverged == 0 else f"{diverged} records differ between replicas",
    )


async def identical_writes(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """K replicas write the same values offline: 0 reported, every collision suppressed."""
    return [
        await _run_collision(
            tmp,
            scenario="identical-writes",
            replicas=3 if quick else 5,
            records=200 if quick else 1_000,
            value_for=lambda i, n, f: f"task {n}" if f == "title" else n % 5,
        )
    ]


async def divergent_writes(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """K replicas write different values offline: one report per losing write."""
    return [
        await _run_collision(
            tmp,
            scenario="divergent-writes",
            replicas=3 if quick else 5,
            records=200 if quick else 1_000,
            value_for=lambda i, n, f: f"task {n} by r{i}" if f == "title" else i,
        )
    ]


async def offline_storm(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    """K replicas offline for M writes each, reconnecting at once (concurrent syncs)."""
    replicas, records = (4, 250) if quick else (8, 1_000)
    return [
        await _run_collision(
            tmp,
            scenario="offline-storm",
            replicas=replicas,
            records=records,
            # odd records diverge, even ones collide with identical content
            value_for=lambda i, n, f: (
                (f"r{i} {n}" if n % 2 else f"shared {n}")
                if f == "title"
                else (i if n % 2 else n % 5)
            ),
            concurrent_reconnect=True,
        )
    ]
