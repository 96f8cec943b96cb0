"""CRDT text: K replicas edit one text concurrently, then sync.

Every replica starts from the same initial text (created identically on each,
so it is one copy, not K), makes random edits offline, and syncs. The scenario
checks that every replica ends with the same text and that every inserted
marker survives, and compares the cost of applying all the edits
through the replica (`apply_remote`, in pull-sized pages) with raw
``pycrdt.Doc.apply_update`` in the same run.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from pycrdt import Doc, Text

from benchmarks.results import ScenarioResult
from quietsync.conflicts import HLC
from quietsync.protocol import Change
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port
from quietsync.replica.sync_client import SyncClient
from quietsync.testing import running_server

__all__ = ["crdt_text"]

USER = "bench"
REF = ("docs", "d1", "body")
INITIAL = "The quick brown fox jumps over the lazy dog. "
PAGE = 500


def _edit_offline(node: Replica, index: int, edits: int, rng: random.Random) -> list[str]:
    """Random inserts and deletes; returns the unique markers this replica inserted.

    Markers are digits and symbols, are never inserted inside one another, and
    only letters and spaces are deleted, so every marker must survive the merge.
    """
    collection, key, field = REF
    markers = []
    for n in range(edits):
        text = node.get(collection, key)[field]  # type: ignore[index]
        if text and rng.random() < 0.3:
            at = rng.randrange(len(text))
            if text[at].isalpha() or text[at] == " ":
                node.text_delete(collection, key, field, at, 1)
                continue
        marker = f"<{index}.{n}>"
        node.text_insert(collection, key, field, _outside_markers(text, rng), marker)
        markers.append(marker)
    return markers


def _outside_markers(text: str, rng: random.Random) -> int:
    """A random insert position that does not split an earlier marker."""
    depth, positions = 0, [0]
    for at, char in enumerate(text, start=1):
        depth += (char == "<") - (char == ">")
        if depth == 0:
            positions.append(at)
    return rng.choice(positions)


def _apply_costs(updates: list[bytes], tmp: Path) -> tuple[float, float]:
    """Seconds to apply `updates` raw, and through a fresh replica in pull-sized pages."""
    started = time.perf_counter()
    doc = Doc()
    doc["text"] = Text()
    for update in updates:
        doc.apply_update(update)
    raw = time.perf_counter() - started

    collection, key, field = REF
    changes = [
        Change(f"x:{i}", collection, key, field, "crdt", HLC(1, i, "x"), update=u)
        for i, u in enumerate(updates)
    ]
    with Replica.open(tmp / "apply.db") as target:
        started = time.perf_counter()
        for start in range(0, len(changes), PAGE):
            sync_port(target).apply_remote(changes[start : start + PAGE])
        ours = time.perf_counter() - started
    return raw, ours


async def crdt_text(tmp: Path, *, quick: bool) -> list[ScenarioResult]:
    replicas, edits = (3, 100) if quick else (5, 400)
    rng = random.Random(42)
    collection, key, field = REF
    async with running_server(tmp / "server.db", users={USER: "bench-token"}) as server:
        nodes = [Replica.open(tmp / f"text{i}.db", node_id=f"t{i}") for i in range(replicas)]
        try:
            for node in nodes:
                node.text_insert(collection, key, field, 0, INITIAL)
            markers = [
                m for i, node in enumerate(nodes) for m in _edit_offline(node, i, edits, rng)
            ]
            updates = [
                m.update
                for node in nodes
                for m in sync_port(node).outbox_batch(10**6)
                if m.update is not None
            ]
            clients = [SyncClient(n, server.url, token=server.token(USER)) for n in nodes]
            try:
                started = time.perf_counter()
                for client in clients:
                    await client.sync_once()
                pushed = time.perf_counter() - started
                for client in clients:
                    await client.sync_once()
                converged = time.perf_counter() - started
            finally:
                for client in clients:
                    await client.stop()
            texts = [node.get(collection, key)[field] for node in nodes]  # type: ignore[index]
        finally:
            for node in nodes:
                node.close()
    diverged = sum(1 for t in texts if t != texts[0])
    missing = sum(1 for m in markers if m not in texts[0])
    raw, ours = _apply_costs(updates, tmp)
    return [
        ScenarioResult(
            scenario="crdt-text",
            variant=f"{replicas} replicas x {edits} edits",
            ops=len(updates),
            seconds=pushed,
            convergence_s=converged,
            reported=0,
            suppressed=0,
            lost=diverged + missing,
            note="lost = replicas off the server's text + markers missing",
        ),
        ScenarioResult(
            scenario="crdt-text",
            variant="apply: replica vs raw pycrdt",
            ops=len(updates),
            seconds=ours,
            convergence_s=None,
            reported=0,
            suppressed=0,
            lost=0,
            note=f"{raw / ours:.2f}x raw Doc.apply_update ({len(updates) / raw:,.0f}/s)",
        ),
    ]
