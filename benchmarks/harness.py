"""The seeded fault harness: several users' replicas, shared and private spaces, random faults.

    python -m benchmarks.harness --seed 7 --replicas 3 --steps 100
    python -m benchmarks.harness --seeds 30            # seeds 0..29
    python -m benchmarks.harness --store postgres --seeds 100

Each run starts ``quietsync serve`` as a subprocess on its own SQLite file
(``--store postgres``: its own new PostgreSQL database, created on the server
of ``--pg-dsn`` and dropped after; backups and restores are then pg_dump and
pg_restore, `benchmarks.harness_db`),
with two users, alice and bob (replica i is alice's when i is even, bob's
when odd, so ``--replicas`` is at least 2). Alice creates a shared space
through the API and makes bob a writer; every replica syncs every space its
user is a member of (``SyncClient(..., spaces=None)``). Every step, a seeded
RNG picks a replica and an action: a write into a random space of its user,
private or shared (a put, a delete or a text edit, with non-ASCII text, on a
small key space so collisions are frequent), going offline, coming online, a
sync, reopening the replica from its file, restarting the server (SIGKILL,
then a new process on the same database and port), taking an online backup
of the server's database, restoring the last backup (SIGKILL, the backup put
in place, a new process: the server forgets everything written since,
memberships included, and the replicas must notice and bring it back), or
alice removing bob from the shared space, or adding him back. Bob's
replicas keep writing to the shared space whatever its membership, like an
app that has not heard yet: what they had not pushed when they lost it is
set aside as ``space_revoked``; re-added, they pull it from 0. While
online, a push's answer is lost now and then (the server applied it, the
client never heard): the client must retry the same ids. At the end
everyone comes online and syncs until nothing moves, then
`benchmarks.harness_check.check` asserts the issue's list per space
(convergence, nothing acknowledged lost, no double apply, distinct
conflicts, no identical-content conflict, and no record in a space its
user cannot read; its docstring has the details and what a removal excuses).

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
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import attrs

from benchmarks._pg import DEFAULT_PG_DSN, default_pg_dsn, new_database
from benchmarks.harness_check import (
    COLLECTION,
    KEYS,
    LWW_FIELDS,
    TEXT_FIELD,
    RunRecord,
    Write,
    check,
)
from benchmarks.harness_db import STORES, ServerDatabase
from benchmarks.harness_faults import AckKey, FaultyTransport, ServerProcess, SpaceAdmin
from quietsync.conflicts import FieldRef
from quietsync.protocol import DELETED_FIELD, private_space
from quietsync.replica import Notifications, Replica, SyncClient
from quietsync.replica.errors import TransportError
from quietsync.replica.replica import sync_port
from quietsync.replica.spaces import space_key

__all__ = ["HarnessConfig", "HarnessFailure", "HarnessStats", "replay_command", "run"]

# A served tokens file needs tokens of 16+ characters. Alice creates the shared space.
USERS = {"alice": "harness-token-alice-0123", "bob": "harness-token-bob-01234"}
ADMIN = "alice"
VALUES = (0, 1, "x", "ÿ", "café ☕", {"tag": "a", "n": 1}, None)
INSERTS = ("ab", "é", "𝄞", "ñü", "😀")


@attrs.frozen
class HarnessConfig:
    """One run: the seed and how often each fault happens (per step)."""

    seed: int
    replicas: int = attrs.field(default=3, validator=attrs.validators.ge(len(USERS)))
    """At least one per user: replica i belongs to user i mod 2."""
    steps: int = 100
    p_restart_server: float = 0.01
    p_restart_replica: float = 0.02
    p_lose_answer: float = 0.2
    p_backup: float = 0.01
    p_restore: float = 0.006
    p_membership: float = 0.02
    """Alice removes bob from the shared space, or adds him back."""
    live: bool = False
    """Run every replica's live loop too (pushes on writes, the socket, backoff)."""
    store: str = attrs.field(default="sqlite", validator=attrs.validators.in_(STORES))
    """The server's store: ``"sqlite"`` or ``"postgres"``."""


@attrs.define
class HarnessStats:
    """What a run did, so a passing run can be seen to have exercised the faults."""

    writes: int = 0
    shared_writes: int = 0
    syncs: int = 0
    failed_syncs: int = 0
    lost_answers: int = 0
    server_restarts: int = 0
    replica_restarts: int = 0
    backups: int = 0
    restores: int = 0
    membership_changes: int = 0
    changes: int = 0
    conflicts: int = 0
    suppressed: int = 0
    set_aside: int = 0


class HarnessFailure(AssertionError):
    """A run broke an invariant; the message lists what and ends with the replay command."""


def replay_command(config: HarnessConfig) -> str:
    live = " --live" if config.live else ""
    store = "" if config.store == "sqlite" else f" --store {config.store}"
    return (
        f"python -m benchmarks.harness --seed {config.seed} "
        f"--replicas {config.replicas} --steps {config.steps}{live}{store}"
    )


@attrs.define
class _Node:
    """One replica of the run with its user, its client and its transport."""

    path: Path
    user: str
    replica: Replica
    transport: FaultyTransport
    client: SyncClient
    writes: dict[tuple[str, FieldRef, str], Write] = attrs.Factory(dict)
    """Every write this replica made, by (space, field, stamp), at the step it was made."""


@attrs.frozen
class _Backup:
    path: Path
    members: frozenset[str]
    """The shared space's members when it was taken: a restore brings them back."""


class Harness:
    """One seeded run (see the module docstring), its server's database `db`: a file in
    `workdir` by default, the URL of an empty PostgreSQL database for ``store="postgres"``."""

    def __init__(self, config: HarnessConfig, workdir: Path, db: str | None = None) -> None:
        self.database = ServerDatabase(workdir / "server.db" if db is None else db)
        if self.database.is_postgres != (config.store == "postgres"):
            raise ValueError(f"a {config.store} run needs a database of its store, not {db!r}")
        self.config = config
        self.rng = random.Random(config.seed)
        self.fault_rng = random.Random(-config.seed)  # live loops draw from it at any time
        tokens = workdir / "tokens.json"
        tokens.write_text(json.dumps({token: user for user, token in USERS.items()}))
        self.server = ServerProcess(self.database.db, tokens)
        self.admin = SpaceAdmin(self.server.url, USERS[ADMIN])
        self.nodes: list[_Node] = []
        self.workdir = workdir
        self.server_acked: dict[AckKey, int] = {}
        self.stats = HarnessStats()
        self.step = 0
        self.shared = ""  # the shared space's id, once created
        self.members = frozenset(USERS)
        self.removed_at: dict[str, int] = {}
        """user -> the step of their latest removal from the shared space."""
        self.forgotten: dict[str, int] = {}
        """user -> their latest removal followed by a restore (`benchmarks.harness_check`)."""
        self.backup: _Backup | None = None
        """The last online backup of the server's database (a restore puts it back)."""

    def _user(self, i: int) -> str:
        return list(USERS)[i % len(USERS)]

    async def _open(self, i: int, online: bool = True) -> _Node:
        path, user = self.workdir / f"replica{i}.db", self._user(i)
        replica = Replica.open(path, node_id=f"s{self.config.seed}r{i}")
        transport = FaultyTransport(
            self.server.url,
            user=user,
            token=USERS[user],
            rng=self.fault_rng,
            p_lose=self.config.p_lose_answer,
            now=lambda: self.step,
            on_lost=self._answer_lost,
        )
        transport.online = online
        on_conflicts = Notifications(replica).write_conflicts if i == 0 else None
        client = SyncClient(replica, transport=transport, batch_size=50, on_conflicts=on_conflicts)
        if self.config.live:
            await client.start()
        return _Node(path, user, replica, transport, client)

    def _answer_lost(self) -> None:
        self.stats.lost_answers += 1

    async def _close(self, node: _Node) -> None:
        self.server_acked.update(node.transport.acknowledged)
        await node.client.stop()
        node.replica.close()

    async def run(self) -> HarnessStats:
        try:
            await self.server.start()
            self.shared = await self.admin.create("équipe 🚀")
            for user in self.members - {ADMIN}:
                await self.admin.set_role(self.shared, user, "write")
        except BaseException:
            await self.server.stop()
            raise
        self.nodes = [await self._open(i) for i in range(self.config.replicas)]
        writes: list[list[Write]] = []
        try:
            for step in range(self.config.steps):
                self.step = step
                await self._step()
                if self.config.live:
                    await asyncio.sleep(0)  # let the live loops interleave with the steps
            self.step = self.config.steps
            await self._settle()
        finally:
            for node in self.nodes:
                writes.append(list(node.writes.values()))
                await self._close(node)
            await self.server.stop()
        await self._check(writes)
        return self.stats

    async def _check(self, writes: list[list[Write]]) -> None:
        record = RunRecord(
            server_db=self.database.db,
            replicas=[(n.path, n.user) for n in self.nodes],
            nodes={n.replica.node_id: n.user for n in self.nodes},
            shared=self.shared,
            members=self.members,
            removed=frozenset(self.removed_at),
            writes=writes,
            acked=self.server_acked,
            forgotten=self.forgotten,
            restored=self.stats.restores > 0,
        )
        verdict = await asyncio.to_thread(check, record)  # a store's calls block
        self.stats.changes, self.stats.conflicts = verdict.changes, verdict.conflicts
        self.stats.suppressed, self.stats.set_aside = verdict.suppressed, verdict.set_aside
        if verdict.problems:
            shown = "\n  ".join(verdict.problems[:20])
            raise HarnessFailure(
                f"seed {self.config.seed}: {len(verdict.problems)} problem(s):\n  {shown}\n"
                f"replay: {replay_command(self.config)}"
            )

    async def _step(self) -> None:
        i = self.rng.randrange(len(self.nodes))
        node, roll = self.nodes[i], self.rng.random()
        config = self.config
        restart, backup = config.p_restart_server, config.p_restart_server + config.p_backup
        restore = backup + config.p_restore
        reopen = restore + config.p_restart_replica
        if roll < restart:
            self.stats.server_restarts += 1
            await self.server.kill()
            await self.server.start()
        elif roll < backup:
            self.stats.backups += 1
            path = self.workdir / f"backup{self.stats.backups}"
            await self.database.backup(path)  # online: the server keeps serving
            self.backup = _Backup(path, self.members)
        elif roll < restore and self.backup is not None:
            self.stats.restores += 1
            await self.server.kill()
            await self.database.restore(self.backup.path)
            await self.server.start()
            self._members_now(self.backup.members)
            self.forgotten.update(self.removed_at)
        elif roll < reopen:
            self.stats.replica_restarts += 1
            online = node.transport.online
            await self._close(node)
            self.nodes[i] = await self._open(i, online)
            self.nodes[i].writes = node.writes
        elif roll < reopen + config.p_membership:
            await self._toggle_member()
        elif roll < 0.10:
            node.transport.online = False
        elif roll < 0.18:
            node.transport.online = True
        elif roll < 0.40:
            self.stats.syncs += 1
            try:
                await node.client.sync_once()
            except TransportError:  # offline, or an answer was lost: the outbox holds it all
                self.stats.failed_syncs += 1
        else:
            self._write(node, roll)

    async def _toggle_member(self) -> None:
        """The admin removes a member of the shared space, or adds them back as a writer."""
        self.stats.membership_changes += 1
        user = self.rng.choice(sorted(set(USERS) - {ADMIN}))
        if user in self.members:
            await self.admin.remove(self.shared, user)
            self._members_now(self.members - {user})
        else:
            await self.admin.set_role(self.shared, user, "write")
            self._members_now(self.members | {user})

    def _members_now(self, members: frozenset[str]) -> None:
        for user in self.members - members:
            self.removed_at[user] = self.step
        self.members = members

    def _write(self, node: _Node, roll: float) -> None:
        space = self.rng.choice((private_space(node.user), self.shared))
        key, r = self.rng.choice(KEYS), node.replica
        view, port = r.space(space), sync_port(r, space_key(space))
        self.stats.writes += 1
        self.stats.shared_writes += space == self.shared
        if roll < 0.70:
            field = self.rng.choice(LWW_FIELDS)
            view.put(COLLECTION, key, {field: self.rng.choice(VALUES)})
        elif roll < 0.78:
            view.delete(COLLECTION, key)
        else:
            state = port.field_state(COLLECTION, key, TEXT_FIELD)
            text = "" if state is None else str(state.write.value)
            if text and self.rng.random() < 0.3:
                at = self.rng.randrange(len(text))
                length = self.rng.randint(1, len(text) - at)
                view.text_delete(COLLECTION, key, TEXT_FIELD, at, length)
            else:
                at = self.rng.randint(0, len(text))
                view.text_insert(COLLECTION, key, TEXT_FIELD, at, self.rng.choice(INSERTS))
        for field in (*LWW_FIELDS, TEXT_FIELD, DELETED_FIELD):
            state = port.field_state(COLLECTION, key, field)
            if state is not None and state.write.stamp.node == r.node_id:
                ref, stamp = FieldRef(COLLECTION, key, field), state.write.stamp
                write = Write(space, ref, stamp, state.kind, self.step)
                node.writes.setdefault((space, ref, str(stamp)), write)

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


async def run(
    config: HarnessConfig, *, database: str | None = None, pg_dsn: str = DEFAULT_PG_DSN
) -> HarnessStats:
    """One seeded run in a temporary directory; raises `HarnessFailure` on any violation.
    On PostgreSQL: in `database` (empty), else in a new one on `pg_dsn`'s server."""
    with tempfile.TemporaryDirectory(prefix="quietsync-harness-") as tmp:
        if config.store == "sqlite" or database is not None:
            return await Harness(config, Path(tmp), database).run()
        async with new_database(pg_dsn, f"qs_harness_{uuid.uuid4().hex[:12]}") as url:
            return await Harness(config, Path(tmp), url).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="one seed to run (replay)")
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1 (without --seed)")
    parser.add_argument("--replicas", type=int, default=3, help="at least 2 (one per user)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--live", action="store_true", help="run the replicas' live loops too")
    parser.add_argument("--store", choices=STORES, default="sqlite", help="the server's store")
    parser.add_argument(
        "--pg-dsn",
        default=default_pg_dsn(),
        help="--store postgres: a server whose user may create (and drop) databases",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the clients' logs")
    args = parser.parse_args(argv)
    # Resyncs after a restore and purges after a removal log warnings by design.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
    failed = 0
    for seed in seeds:
        config = HarnessConfig(
            seed, replicas=args.replicas, steps=args.steps, live=args.live, store=args.store
        )
        start = time.perf_counter()
        try:
            stats = asyncio.run(run(config, pg_dsn=args.pg_dsn))
        except HarnessFailure as exc:
            failed += 1
            print(exc, flush=True)
        else:
            print(f"seed {seed}: ok ({time.perf_counter() - start:.1f} s) {stats}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
