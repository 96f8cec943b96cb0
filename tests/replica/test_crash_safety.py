"""SIGKILL at random moments never loses an acknowledged write nor corrupts the outbox.

A child process writes records and prints each acknowledgement (see
``crash_child.py``); the test kills it with SIGKILL at a random point, reopens
the file and checks: every acknowledged write is there, ``PRAGMA
integrity_check`` is ok, and the outbox holds exactly the written writes whose
push was not acknowledged. One file lives through all the kills, so recovery
of an already recovered file is exercised too.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from quietsync.replica import Replica
from quietsync.replica.replica import sync_port

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 24
FIELDS = ("i", "text")
ROOT = Path(__file__).resolve().parents[2]


class Ledger:
    """What the child acknowledged, from its output lines."""

    def __init__(self) -> None:
        self.acked: set[str] = set()  # record keys
        self.pushed: set[str] = set()  # "key/field" outbox entries
        self.maybe_pushed: set[str] = set()

    def read(self, line: str) -> None:
        tag, _, rest = line.strip().partition(" ")
        keys = set(rest.split())
        if tag == "W":
            self.acked |= keys
        elif tag == "p":
            self.maybe_pushed = keys
        elif tag == "P":
            self.pushed |= keys
            self.maybe_pushed = set()


def _run_and_kill(path: Path, first: int, rng: random.Random, ledger: Ledger) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(first)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        for _ in range(rng.randint(1, 40)):
            ledger.read(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    for line in proc.stdout:  # acknowledged before the kill landed
        ledger.read(line)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _check(path: Path, ledger: Ledger) -> int:
    """Verify the reopened file against the ledger; return the next index to write."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Replica.open(path) as replica:
        stored = set(replica.keys("items"))
        missing = ledger.acked - stored
        assert not missing, f"acknowledged writes lost: {sorted(missing)}"
        # At most the one call in flight at the kill (two records) may exist unacknowledged.
        assert len(stored - ledger.acked) <= 2
        for key in ledger.acked:
            assert replica.get("items", key)["i"] == int(key[1:])
        outbox = sync_port(replica).outbox_batch(1_000_000)
        in_outbox = {f"{m.key}/{m.field}" for m in outbox}
        written = {f"{k}/{f}" for k in stored for f in FIELDS}
        assert len(in_outbox) == len(outbox), "one entry per field write"
        assert not in_outbox & ledger.pushed, "an acknowledged push came back"
        assert in_outbox <= written, "an outbox entry without its write"
        assert written - in_outbox <= ledger.pushed | ledger.maybe_pushed, "a write not queued"
        for m in outbox:
            assert sync_port(replica).field_state("items", m.key, m.field).write.stamp == m.stamp
        # The push in flight at the kill either happened entirely or not at all.
        landed = ledger.maybe_pushed - in_outbox
        assert landed in (set(), ledger.maybe_pushed)
        ledger.pushed |= landed
        ledger.acked |= stored
        ledger.maybe_pushed = set()
        return max((int(k[1:]) for k in stored), default=-1) + 1


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "crash.db"
    ledger = Ledger()
    first = 0
    for kill in range(KILLS):
        _run_and_kill(path, first, rng, ledger)
        try:
            first = _check(path, ledger)
        except AssertionError as exc:
            raise AssertionError(f"after kill {kill + 1} (seed {seed}): {exc}") from exc
    assert len(ledger.acked) >= KILLS  # every round acknowledged at least one write
