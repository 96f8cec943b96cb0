"""The seeded multi-replica fault harness: K replicas, one real server process, random faults.

    python -m benchmarks.harness --seed 7 --replicas 3 --steps 200
    python -m benchmarks.harness --seeds 30            # seeds 0..29

Each run starts ``quietsync serve`` as a subprocess on its own SQLite file and
opens K replica files. Every step, a seeded RNG picks a replica and an action:
a put, a delete or a text edit on a small key space (so collisions are
frequent), going offline, coming online, a sync, reopening the replica from
its file, restarting the server (SIGKILL, then a new process on the same
database and port), taking an online backup of the server's database, or
restoring the last backup (SIGKILL, the backup put in place, a new process:
the server forgets everything written since, and the replicas must notice
and bring it back). While online, a push's answer is lost now and then (the
server applied it, the client never heard): the client must retry the same
ids. At the end everyone comes online and syncs until nothing moves, then
`check` asserts the issue's list:

1. every replica's fields (kind, stamp, content) equal the server's;
2. no acknowledged write was lost: every write a replica acknowledged reached
   the server (the field holds its stamp or a newer one; a text field holds
   every edit the replica made), and every mutation the server acknowledged
   is covered by its client's mark there (so a retry is never merged again);
3. no mutation was applied twice (each id the last write of one field at most);
4. every reported conflict has a distinct losing write, on the server and in
   each replica's conflict log;
5. no identical-content event was reported as a conflict.

The seed fixes the sequence of actions; stamps come from the wall clock, so
a replay reproduces the schedule, not the exact stamps. A failure raises
`HarnessFailure` whose message ends with the command that replays it.

This is a top-layer module: it wires `replica` (the clients) and `server`
(the process and a read of its store after the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import attrs
from pycrdt import get_update

from benchmarks._loopback import PortHold
from quietsync.conflicts import HLC, CrdtText, FieldRef, canonical_equal, text_of
from quietsync.protocol import DELETED_FIELD, Mutation, private_space
from quietsync.replica import (
    HttpTransport,
    LiveMessage,
    Notifications,
    PullPage,
    PushAnswer,
    Replica,
    SyncClient,
)
from quietsync.replica.errors import TransportError
from quietsync.replica.replica import sync_port
from quietsync.replica.transport import ConflictPage, SpaceInfo
from quietsync.server.admin import backup_database, restore_database
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import StoredField

__all__ = ["HarnessConfig", "HarnessFailure", "HarnessStats", "replay_command", "run"]

USER, TOKEN = "alice", "harness-token-0123"  # a served tokens file needs 16+ characters
SPACE = private_space(USER)
COLLECTION = "notes"
KEYS = ("k0", "k1", "k2", "k3")
LWW_FIELDS = ("title", "done")
TEXT_FIELD = "body"
VALUES = (0, 1, "x", "y", {"tag": "a", "n": 1}, None)
ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class HarnessConfig:
    """One run: the seed and how often each fault happens (per step)."""

    seed: int
    replicas: int = 3
    steps: int = 200
    p_restart_server: float = 0.015
    p_restart_replica: float = 0.02
    p_lose_answer: float = 0.2
    p_backup: float = 0.01
    p_restore: float = 0.006
    live: bool = False
    """Run every replica's live loop too (pushes on writes, the socket, backoff)."""


@attrs.define
class HarnessStats:
    """What a run did, so a passing run can be seen to have exercised the faults."""

    writes: int = 0
    syncs: int = 0
    failed_syncs: int = 0
    lost_answers: int = 0
    server_restarts: int = 0
    replica_restarts: int = 0
    backups: int = 0
    restores: int = 0
    changes: int = 0
    conflicts: int = 0
    suppressed: int = 0


class HarnessFailure(AssertionError):
    """A run broke an invariant; the message lists what and ends with the replay command."""


def replay_command(config: HarnessConfig) -> str:
    live = " --live" if config.live else ""
    return (
        f"python -m benchmarks.harness --seed {config.seed} "
        f"--replicas {config.replicas} --steps {config.steps}{live}"
    )


class ServerProcess:
    """``quietsync serve`` in a subprocess that can be SIGKILLed and started again.

    Its port is held from creation to `stop` (see `PortHold`), so every restart gets it
    back even while other processes start servers of their own.
    """

    def __init__(self, db: Path, tokens: Path) -> None:
        self._port = PortHold()
        self.db, self._tokens, self.port = db, tokens, self._port.port
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quietsync", "serve", "--db", str(self.db),
            "--port", str(self.port), "--tokens", str(self._tokens),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert self._proc.stderr is not None
        while line := (await asyncio.wait_for(self._proc.stderr.readline(), 30)).decode():
            self.log.append(line.rstrip())
            if "Running on" in line:
                self._drain = asyncio.create_task(self._drain_log(self._proc.stderr))
                return
        raise HarnessFailure("quietsync serve exited before listening:\n" + "\n".join(self.log))

    async def _drain_log(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.log.append(line.decode().rstrip())

    async def kill(self) -> None:
        """SIGKILL: no graceful shutdown, whatever was in flight is cut."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)
            await self._proc.wait()
        if self._drain is not None:
            await self._drain
        self._proc = self._drain = None

    async def stop(self) -> None:
        """Kill the server (if it runs) and release its port: it will not start again."""
        await self.kill()
        self._port.close()


class FaultyTransport:
    """An `HttpTransport` that can be offline and can lose push answers (seeded).

    Records every mutation id whose acknowledgement reached the client.
    """

    def __init__(self, url: str, rng: random.Random, p_lose: float, stats: HarnessStats) -> None:
        self._inner = HttpTransport(url, token=TOKEN, timeout=10.0)
        self._rng, self.p_lose, self._stats = rng, p_lose, stats
        self.online = True
        self.acknowledged: dict[str, str] = {}

    def _check_online(self) -> None:
        if not self.online:
            raise TransportError("harness: replica is offline")

    async def push(self, mutations: Sequence[Mutation], space: str | None = None) -> PushAnswer:
        self._check_online()
        answer = await self._inner.push(mutations, space)
        if self._rng.random() < self.p_lose:
            self._stats.lost_answers += 1
            raise TransportError("harness: push answer lost after the server applied it")
        self.acknowledged.update(answer.outcomes)
        return answer

    async def pull(
        self, since: int, limit: int, history: str | None = None, space: str | None = None
    ) -> PullPage:
        self._check_online()
        return await self._inner.pull(since, limit, history, space)

    def live(
        self, since: int, history: str | None = None, space: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[LiveMessage]]:
        self._check_online()
        return self._inner.live(since, history, space)

    async def conflicts(self, since: int, limit: int, space: str | None = None) -> ConflictPage:
        self._check_online()
        return await self._inner.conflicts(since, limit, space)

    async def spaces(self) -> list[SpaceInfo]:
        self._check_online()
        return await self._inner.spaces()

    async def close(self) -> None:
        await self._inner.close()


@attrs.define
class _Node:
    """One replica of the run with its client and its transport."""

    path: Path
    replica: Replica
    transport: FaultyTransport
    client: SyncClient
    acked: set[tuple[FieldRef, HLC, str]] = attrs.Factory(set)


class Harness:
    """One seeded run (see the module docstring)."""

    def __init__(self, config: HarnessConfig, workdir: Path) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.fault_rng = random.Random(-config.seed)  # live loops draw from it at any time
        tokens = workdir / "tokens.json"
        tokens.write_text(json.dumps({TOKEN: USER}))
        self.server = ServerProcess(workdir / "server.db", tokens)
        self.nodes: list[_Node] = []
        self.workdir = workdir
        self.server_acked: dict[str, str] = {}
        self.stats = HarnessStats()
        self.backup: Path | None = None
        """The last online backup of the server's database (a restore puts it back)."""

    async def _open(self, i: int, online: bool = True) -> _Node:
        path = self.workdir / f"replica{i}.db"
        replica = Replica.open(path, node_id=f"s{self.config.seed}r{i}")
        transport = FaultyTransport(
            self.server.url, self.fault_rng, self.config.p_lose_answer, self.stats
        )
        transport.online = online
        on_conflicts = Notifications(replica).write_conflicts if i == 0 else None
        client = SyncClient(replica, transport=transport, batch_size=50, on_conflicts=on_conflicts)
        if self.config.live:
            await client.start()
        return _Node(path, replica, transport, client)

    async def _close(self, node: _Node) -> None:
        self.server_acked.update(node.transport.acknowledged)
        await node.client.stop()
        node.replica.close()

    async def run(self) -> HarnessStats:
        try:
            await self.server.start()
        except BaseException:
            await self.server.stop()
            raise
        self.nodes = [await self._open(i) for i in range(self.config.replicas)]
        acked: dict[int, set[tuple[FieldRef, HLC, str]]] = {}
        try:
            for _ in range(self.config.steps):
                await self._step()
                if self.config.live:
                    await asyncio.sleep(0)  # let the live loops interleave with the steps
            await self._settle()
        finally:
            for i, node in enumerate(self.nodes):
                acked[i] = node.acked
                await self._close(node)
            await self.server.stop()
        check(self.config, self.server.db, self.workdir, acked, self.server_acked, self.stats)
        return self.stats

    async def _step(self) -> None:
        i = self.rng.randrange(len(self.nodes))
        node, roll = self.nodes[i], self.rng.random()
        config = self.config
        restart, backup = config.p_restart_server, config.p_restart_server + config.p_backup
        restore = backup + config.p_restore
        if roll < restart:
            self.stats.server_restarts += 1
            await self.server.kill()
            await self.server.start()
        elif roll < backup:
            self.stats.backups += 1
            self.backup = self.workdir / f"backup{self.stats.backups}.db"
            backup_database(self.server.db, self.backup)  # online: the server keeps serving
        elif roll < restore and self.backup is not None:
            self.stats.restores += 1
            await self.server.kill()
            restore_database(self.backup, self.server.db)
            await self.server.start()
        elif roll < restore + config.p_restart_replica:
            self.stats.replica_restarts += 1
            online = node.transport.online
            acked = node.acked
            await self._close(node)
            self.nodes[i] = await self._open(i, online)
            self.nodes[i].acked = acked
        elif roll < 0.08:
            node.transport.online = False
        elif roll < 0.16:
            node.transport.online = True
        elif roll < 0.40:
            self.stats.syncs += 1
            try:
                await node.client.sync_once()
            except TransportError:  # offline, or an answer was lost: the outbox holds it all
                self.stats.failed_syncs += 1
        else:
            self._write(node, roll)

    def _write(self, node: _Node, roll: float) -> None:
        key, r = self.rng.choice(KEYS), node.replica
        self.stats.writes += 1
        if roll < 0.70:
            field = self.rng.choice(LWW_FIELDS)
            r.put(COLLECTION, key, {field: self.rng.choice(VALUES)})
        elif roll < 0.78:
            r.delete(COLLECTION, key)
        else:
            state = sync_port(r).field_state(COLLECTION, key, TEXT_FIELD)
            text = "" if state is None else str(state.write.value)
            if text and self.rng.random() < 0.3:
                at = self.rng.randrange(len(text))
                r.text_delete(COLLECTION, key, TEXT_FIELD, at, self.rng.randint(1, len(text) - at))
            else:
                at = self.rng.randint(0, len(text))
                r.text_insert(COLLECTION, key, TEXT_FIELD, at, self.rng.choice("abc") * 2)
        for field in (*LWW_FIELDS, TEXT_FIELD, DELETED_FIELD):
            state = sync_port(r).field_state(COLLECTION, key, field)
            if state is not None and state.write.stamp.node == r.node_id:
                node.acked.add((FieldRef(COLLECTION, key, field), state.write.stamp, state.kind))

    async def _settle(self) -> None:
        """Live loops stopped, everyone online, no lost answers; sync until nothing moves."""
        for node in self.nodes:
            await node.client.stop()
            node.transport.online, node.transport.p_lose = True, 0.0
        for _ in range(10):
            moved = 0
            for node in self.nodes:
                summary = await node.client.sync_once()
                moved += summary.pushed + summary.pulled + summary.skipped + summary.refused
            if moved == 0:
                return
        raise HarnessFailure(f"no convergence after 10 sync rounds\n{replay_command(self.config)}")


def check(
    config: HarnessConfig,
    server_db: Path,
    workdir: Path,
    acked: dict[int, set[tuple[FieldRef, HLC, str]]],
    server_acked: dict[str, str],
    stats: HarnessStats,
) -> None:
    """Assert the issue's list over the stopped server's store and the replica files."""
    problems: list[str] = []
    store = SQLiteStore(server_db)
    try:
        log, since = [], 0
        while True:
            page = store.changes(SPACE, since, 5000, 1 << 30)
            log += page.changes
            since = page.cursor
            if not page.has_more:
                break
        conflicts = store.conflicts(SPACE, 0, 100_000, 1 << 30).conflicts
        refs = {FieldRef(COLLECTION, k, f) for k in KEYS for f in (*LWW_FIELDS, TEXT_FIELD)}
        refs |= {FieldRef(c.collection, c.key, c.field) for c in log}
        refs |= {FieldRef(COLLECTION, k, DELETED_FIELD) for k in KEYS}
        acked_ids = [mid.rpartition(":") for mid in server_acked]
        with store.transaction(SPACE) as tx:
            fields = tx.fields(refs)
            marks = tx.marks({client for client, _, _ in acked_ids})
    finally:
        store.close()
    stats.changes, stats.conflicts = len(log), len(conflicts)
    ids = [c.id for c in log]
    problems += [f"mutation {i} applied twice" for i in {i for i in ids if ids.count(i) > 1}]
    problems += [
        f"acknowledged {client}:{n} not covered by its client's mark"
        for client, _, n in acked_ids
        if client not in marks or marks[client].outcome(int(n)) is None
    ]
    losers = [(c.ref, c.loser.stamp) for c in conflicts]  # one stamp may cover several fields
    problems += [f"losing write {w} reported twice" for w in set(losers) if losers.count(w) > 1]
    problems += [
        f"identical content reported as a conflict: {c}"
        for c in conflicts
        if canonical_equal(c.winner.value, c.loser.value)
    ]
    for i in range(config.replicas):
        with Replica.open(workdir / f"replica{i}.db") as r:
            if r.pending_count():
                problems.append(f"replica {i}: {r.pending_count()} writes never pushed")
            for ref in sorted(refs, key=attrs.astuple):
                problems += _compare(i, r, ref, fields.get(ref))
            stats.suppressed += r.suppressed_count()
            mine = [(c.ref, c.loser.stamp) for c in r.conflicts()]
            if len(mine) != len(set(mine)):
                problems.append(f"replica {i}: conflict log has repeats")
            # A restore forgets the server's conflicts since the backup; the
            # replica's log keeps what it was told, so only then may it hold more.
            if not stats.restores and not set(mine) <= set(losers):
                problems.append(f"replica {i}: conflict log has unknown conflicts")
            for ref, stamp, kind in acked[i]:
                server = fields.get(ref)
                if server is None or server.stamp < stamp:
                    problems.append(f"replica {i}: acknowledged write {ref} @ {stamp} lost")
                elif kind == "crdt" and not _holds_every_edit(r, ref, server):
                    problems.append(f"replica {i}: a text edit of {ref} never reached the server")
    if problems:
        shown = "\n  ".join(problems[:20])
        raise HarnessFailure(
            f"seed {config.seed}: {len(problems)} problem(s):\n  {shown}\n"
            f"replay: {replay_command(config)}"
        )


def _holds_every_edit(r: Replica, ref: FieldRef, server: StoredField) -> bool:
    """True when the server's text state holds every edit the replica's state holds."""
    mine = sync_port(r).field_state(ref.collection, ref.key, ref.field)
    if mine is None or mine.state is None or server.state is None:
        return mine is None
    missing = get_update(mine.state, CrdtText(server.state).state_vector())
    return missing[0] == 0  # first varuint: how many clients have structs the server lacks


def _compare(i: int, r: Replica, ref: FieldRef, server: StoredField | None) -> list[str]:
    mine = sync_port(r).field_state(ref.collection, ref.key, ref.field)
    if server is None or mine is None:
        return [] if server is mine else [f"replica {i}: {ref} is {mine} but server has {server}"]
    if mine.write.stamp != server.stamp or mine.kind != server.kind:
        return [f"replica {i}: {ref} at {mine.write.stamp}, server at {server.stamp}"]
    theirs = text_of(server.state) if mine.kind == "crdt" else server.value
    if not canonical_equal(mine.write.value, theirs):
        return [f"replica {i}: {ref} holds {mine.write.value!r}, server {theirs!r}"]
    return []


async def run(config: HarnessConfig) -> HarnessStats:
    """One seeded run in a temporary directory; raises `HarnessFailure` on any violation."""
    with tempfile.TemporaryDirectory(prefix="quietsync-harness-") as tmp:
        return await Harness(config, Path(tmp)).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="one seed to run (replay)")
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1 (without --seed)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--live", action="store_true", help="run the replicas' live loops too")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the clients' logs")
    args = parser.parse_args(argv)
    # Resyncs after a restore log warnings by design; shown only when asked.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
    failed = 0
    for seed in seeds:
        config = HarnessConfig(seed, replicas=args.replicas, steps=args.steps, live=args.live)
        start = time.perf_counter()
        try:
            stats = asyncio.run(run(config))
        except HarnessFailure as exc:
            failed += 1
            print(exc, flush=True)
        else:
            print(f"seed {seed}: ok ({time.perf_counter() - start:.1f} s) {stats}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
