"""What a fault-harness run must end with: `check` over the stopped server and the replicas.

The run (`benchmarks.harness`) writes to a few records of one collection in
every space it has: each user's private space and one shared space. Once it
settled and stopped, `check` reads the server's store and every replica file
and lists what breaks the issue's invariants, space by space:

1. every replica's fields (kind, stamp, content) equal the server's, in every
   space its user can read at the end;
2. no acknowledged write was lost: every write a replica made reached the
   server (the field holds its stamp or a newer one; a text field holds every
   edit the replica made), and every mutation the server acknowledged is
   covered by its pushing client's mark in that space (so a retry is never
   merged again);
3. no mutation was applied twice (each id the last write of one field at most);
4. every reported conflict has a distinct losing write, on the server and in
   each replica's conflict log;
5. no identical-content event was reported as a conflict;
6. nothing leaks across spaces: a replica holds nothing of a shared space its
   user cannot read at the end, and a user's private space on the server holds
   only writes of that user's replicas (a replica's private space equals its
   own user's, by 1).

Membership changes excuse exactly two things. A write to the shared space the
replica had not pushed when its user lost the space is set aside, with reason
``space_revoked`` (``docs/replica.md``, "Spaces"): it need not reach the
server, but only a user who was removed may have such writes. And a write
acknowledged before its user was removed may be gone after a later restore
of an older backup: the writer purged the space, so it cannot push the write
back (a restored server gets back only what some replica still holds), and
the user's other members may never have pulled it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
from pycrdt import get_update

from quietsync.conflicts import HLC, Conflict, CrdtText, FieldRef, canonical_equal, text_of
from quietsync.protocol import DELETED_FIELD, Change, private_space
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port
from quietsync.replica.spaces import space_key
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import ClientMark, Store, StoredField

__all__ = [
    "COLLECTION",
    "KEYS",
    "LWW_FIELDS",
    "REVOKED",
    "TEXT_FIELD",
    "RunRecord",
    "Verdict",
    "Write",
    "check",
]

COLLECTION = "notes"
KEYS = ("k0", "k1", "k2", "k3")
LWW_FIELDS = ("title", "done")
TEXT_FIELD = "body"
FIELDS = (*LWW_FIELDS, TEXT_FIELD, DELETED_FIELD)
REVOKED = "space_revoked"


@attrs.frozen
class Write:
    """A write a replica made (its call returned): it must reach the server, unless excused."""

    space: str
    ref: FieldRef
    stamp: HLC
    kind: str
    step: int
    """The harness step it was made at (compared with the steps of removals)."""


@attrs.frozen
class RunRecord:
    """What a stopped run leaves for `check`: where its files are and who did what."""

    server_db: Path | str
    """An SQLite file, or a PostgreSQL database's URL."""
    replicas: list[tuple[Path, str]]
    """Each replica's file and its user, in replica order."""
    nodes: Mapping[str, str]
    """Each replica's node id -> its user."""
    shared: str
    members: frozenset[str]
    """The shared space's members at the end."""
    removed: frozenset[str]
    """Users removed from the shared space at some point (by the admin, or by a restore)."""
    writes: list[list[Write]]
    """Per replica, in replica order."""
    acked: Mapping[tuple[str, str, str], int]
    """(user, space, mutation id) -> the step its acknowledgement reached the client."""
    forgotten: Mapping[str, int]
    """user -> a step: their shared-space writes from before it may be gone (module docstring)."""
    restored: bool


@attrs.frozen
class Verdict:
    """The problems found (none: the run passed) and the counts a passing run shows."""

    problems: list[str]
    changes: int
    conflicts: int
    suppressed: int
    set_aside: int


@attrs.frozen
class _ServerSpace:
    log: list[Change]
    conflicts: list[Conflict]
    fields: dict[FieldRef, StoredField]
    marks: dict[str, ClientMark]


def _mark_key(user: str, space: str, client: str) -> str:
    """Where the server files a client's mark: under the client in its user's private
    space, under ``<len>:<user>:<client>`` in a shared one (`quietsync.server.sync`)."""
    return client if space == private_space(user) else f"{len(user)}:{user}:{client}"


def _refs(changes: Iterable[Change]) -> set[FieldRef]:
    refs = {FieldRef(COLLECTION, k, f) for k in KEYS for f in FIELDS}
    return refs | {FieldRef(c.collection, c.key, c.field) for c in changes}


def _read_space(store: Store, space: str, clients: set[str]) -> _ServerSpace:
    log: list[Change] = []
    since = 0
    while True:
        page = store.changes(space, since, 5000, 1 << 30)
        log += page.changes
        since = page.cursor
        if not page.has_more:
            break
    conflicts = store.conflicts(space, 0, 100_000, 1 << 30).conflicts
    with store.transaction(space) as tx:
        fields = tx.fields(_refs(log))
        marks = tx.marks(clients)
    return _ServerSpace(log, conflicts, fields, marks)


def _open_store(db: Path | str) -> Store:
    if isinstance(db, Path):
        return SQLiteStore(db)
    from quietsync.server.postgres_store import PostgresStore  # asyncpg: an optional extra

    return PostgresStore(db)


def check(run: RunRecord) -> Verdict:
    """Read the stopped server's store and every replica file; list what breaks 1-6."""
    spaces = [*sorted({private_space(u) for u in run.nodes.values()}), run.shared]
    clients: dict[str, set[str]] = {space: set() for space in spaces}
    for user, space, mid in run.acked:
        clients[space].add(_mark_key(user, space, mid.rpartition(":")[0]))
    store = _open_store(run.server_db)
    try:
        server = {space: _read_space(store, space, clients[space]) for space in spaces}
    finally:
        store.close()
    problems = [p for space in spaces for p in _server_problems(run, space, server[space])]
    for (user, space, mid), step in run.acked.items():
        client, _, n = mid.rpartition(":")
        mark = server[space].marks.get(_mark_key(user, space, client))
        if (mark is None or mark.outcome(int(n)) is None) and not _excused(run, user, space, step):
            problems.append(f"{space}: acknowledged {mid} not covered by its client's mark")
    suppressed = set_aside = 0
    for i, (path, user) in enumerate(run.replicas):
        with Replica.open(path) as r:
            problems += _replica_problems(run, i, user, r, server)
            suppressed += r.suppressed_count()
            set_aside += len(r.refused())
    return Verdict(
        problems,
        changes=sum(len(s.log) for s in server.values()),
        conflicts=sum(len(s.conflicts) for s in server.values()),
        suppressed=suppressed,
        set_aside=set_aside,
    )


def _excused(run: RunRecord, user: str, space: str, step: int) -> bool:
    """Acknowledged before its user was removed, and a restore came after (docstring)."""
    return space == run.shared and step < run.forgotten.get(user, -1)


def _server_problems(run: RunRecord, space: str, theirs: _ServerSpace) -> list[str]:
    ids = [c.id for c in theirs.log]
    problems = [
        f"{space}: mutation {i} applied twice" for i in {i for i in ids if ids.count(i) > 1}
    ]
    losers = [(c.ref, c.loser.stamp) for c in theirs.conflicts]  # one stamp may cover fields
    problems += [
        f"{space}: losing write {w} reported twice" for w in set(losers) if losers.count(w) > 1
    ]
    problems += [
        f"{space}: identical content reported as a conflict: {c}"
        for c in theirs.conflicts
        if canonical_equal(c.winner.value, c.loser.value)
    ]
    owner = next((u for u in run.nodes.values() if private_space(u) == space), None)
    if owner is not None:  # a private space: its owner's replicas wrote everything in it
        writers = {c.id.rpartition(":")[0] for c in theirs.log}
        writers |= {f.stamp.node for f in theirs.fields.values()}
        problems += [
            f"{space}: holds a write of {run.nodes.get(node, 'nobody')}'s node {node}"
            for node in sorted(writers)
            if run.nodes.get(node) != owner
        ]
    return problems


def _replica_problems(
    run: RunRecord, i: int, user: str, r: Replica, server: Mapping[str, _ServerSpace]
) -> list[str]:
    problems = (
        [f"replica {i}: {r.pending_count()} writes never pushed"] if r.pending_count() else []
    )
    readable = {private_space(user)} | ({run.shared} if user in run.members else set())
    for space in sorted(readable):
        view = r.space(space)
        refs = _refs(server[space].log)
        refs |= {FieldRef(COLLECTION, k, f) for k in view.keys(COLLECTION) for f in FIELDS}
        for ref in sorted(refs, key=attrs.astuple):
            problems += _compare(
                f"replica {i} in {space}", r, space, ref, server[space].fields.get(ref)
            )
        mine = [(c.ref, c.loser.stamp) for c in view.conflicts()]
        if len(mine) != len(set(mine)):
            problems.append(f"replica {i}: conflict log of {space} has repeats")
        # A restore forgets the server's conflicts since the backup; the
        # replica's log keeps what it was told, so only then may it hold more.
        losers = {(c.ref, c.loser.stamp) for c in server[space].conflicts}
        if not run.restored and not set(mine) <= losers:
            problems.append(f"replica {i}: conflict log of {space} has unknown conflicts")
    if run.shared not in readable:
        held = sync_port(r).local_spaces() & {run.shared}
        held_keys = r.space(run.shared).keys(COLLECTION)
        if held or held_keys:
            problems.append(f"replica {i} ({user}) holds records of {run.shared}, not a member")
    set_aside: set[tuple[str, FieldRef, HLC]] = set()
    for refused in r.refused():
        m, space = refused.mutation, refused.space or private_space(user)
        if refused.reason != REVOKED or space != run.shared or user not in run.removed:
            problems.append(f"replica {i}: {m.id} in {space} refused: {refused.reason}")
        set_aside.add((space, FieldRef(m.collection, m.key, m.field), m.stamp))
    for w in run.writes[i]:
        if (w.space, w.ref, w.stamp) in set_aside or _excused(run, user, w.space, w.step):
            continue
        theirs = server[w.space].fields.get(w.ref)
        if theirs is None or theirs.stamp < w.stamp:
            problems.append(
                f"replica {i}: acknowledged write {w.ref} @ {w.stamp} in {w.space} lost"
            )
        elif w.kind == "crdt" and w.space in readable and not _holds_every_edit(r, w, theirs):
            problems.append(f"replica {i}: a text edit of {w.ref} in {w.space} never reached it")
    return problems


def _holds_every_edit(r: Replica, w: Write, server: StoredField) -> bool:
    """True when the server's text state holds every edit the replica's state holds."""
    mine = sync_port(r, space_key(w.space)).field_state(w.ref.collection, w.ref.key, w.ref.field)
    if mine is None or mine.state is None or server.state is None:
        return mine is None
    missing = get_update(mine.state, CrdtText(server.state).state_vector())
    return missing[0] == 0  # first varuint: how many clients have structs the server lacks


def _compare(
    who: str, r: Replica, space: str, ref: FieldRef, server: StoredField | None
) -> list[str]:
    mine = sync_port(r, space_key(space)).field_state(ref.collection, ref.key, ref.field)
    if server is None or mine is None:
        return [] if server is mine else [f"{who}: {ref} is {mine} but server has {server}"]
    if mine.write.stamp != server.stamp or mine.kind != server.kind:
        return [f"{who}: {ref} at {mine.write.stamp}, server at {server.stamp}"]
    theirs = text_of(server.state) if mine.kind == "crdt" else server.value
    if not canonical_equal(mine.write.value, theirs):
        return [f"{who}: {ref} holds {mine.write.value!r}, server {theirs!r}"]
    return []
