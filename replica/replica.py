"""`Replica`: the local, durable copy of a user's records, as the app sees it.

The app's face of a replica file: lifecycle, transactions, reads, writes,
CRDT text, subscriptions, and what the sync reported (conflicts, suppressed
events, refused writes). Local write policy lives in `replica.local`, rows in
`replica.store`, the state both faces share in `replica.core`; what the sync
client and the stream tracker need (outbox, remote changes, cursor) is the
other face, `replica.sync_port.SyncPort`, which they get with `sync_port()`.
The invariants:

1. **Acknowledged means durable.** Every local write is one transaction: the
   new field values with their stamps, and outbox rows holding one mutation
   per changed field. When `put()` returns, the write survives a killed
   process.
2. **A write records what it saw.** Its `base` is the field's stamp in the
   replica at write time (None if the field was never written), which is what
   lets the server tell a conflict from an update.
3. **No-op writes are not writes.** A put whose value is canonical-equal to
   the stored one issues no stamp and no outbox entry: pushing what the
   server already holds would only create suppressed noise. A call that does
   write stamps all its fields with one fresh stamp.
4. Stamps only grow and subscribers hear about committed changes only
   (`replica.core`).

The record calls live in `replica.space_view.SpaceView`: a `Replica` is the
view of the private space, `Replica.space(id)` the view of a shared one
(`replica.spaces` keeps the spaces apart); the invariants hold in every space.

Deletion is the LWW tombstone field ``_deleted`` (`quietsync.protocol.DELETED_FIELD`);
any later local write to the record (a put or a text edit) revives it by
writing ``_deleted: False``. The other fields stay stored under a tombstone.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from os import PathLike
from pathlib import Path

from quietsync.conflicts import wall_clock_ms
from quietsync.replica.core import ReplicaCore
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.space_view import SpaceView
from quietsync.replica.spaces import PRIVATE, SpaceKey, space_key
from quietsync.replica.sync_port import SyncPort

__all__ = ["Replica", "sync_port"]


class Replica(SpaceView):
    """A local replica file, opened by `Replica.open`; see the module docstring.

    Its record calls (`SpaceView`) are the private space's; `space(id)` gives
    a shared space's.
    """

    def __init__(self, core: ReplicaCore) -> None:
        super().__init__(core, PRIVATE)

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        node_id: str | None = None,
        max_drift_ms: int = 60_000,
        wall: Callable[[], int] = wall_clock_ms,
    ) -> Replica:
        """Create or reopen the replica at `path` (see `replica.errors` for refusals).

        The node id is generated once and stored; passing a different one for
        an existing file is a `NodeIdMismatchError`. `wall` is the clock's
        source of milliseconds: tests give a replica a skewed clock with it.
        """
        return cls(ReplicaCore.open(path, node_id=node_id, max_drift_ms=max_drift_ms, wall=wall))

    def close(self) -> None:
        """Close the file and release it for the next owner; closing twice is harmless."""
        self._core.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._core.store.path

    @property
    def node_id(self) -> str:
        return self._core.node_id

    @property
    def closed(self) -> bool:
        return self._core.closed

    def transaction(self) -> AbstractContextManager[None]:
        """Group several calls into one atomic transaction (nesting is allowed).

        Subscribers hear about the changes after the outermost commit; on an
        exception nothing inside is kept and nobody is notified.
        """
        return self._core.transaction()

    # -- spaces ----------------------------------------------------------------

    def space(self, space_id: str) -> SpaceView:
        """The records of the space `space_id` (`SpaceView`: the same calls as here).

        A ``u:`` id is this replica's private space (a replica holds one user's
        data), which is this object's own; any other id is a shared space,
        kept apart from every other space (`quietsync.replica.spaces`).
        `ValueError` if `space_id` cannot be a space id.
        """
        space = space_key(space_id)
        return self if space is None else SpaceView(self._core, space)

    # -- text compaction ---------------------------------------------------------

    def compact(self) -> int:
        """Fold every text field's edits into its snapshot, then rewrite the file smaller.

        The replica compacts a field by itself as its edits accumulate; this
        is for after an import, or before copying the file. Returns how many
        text fields were compacted. Not inside a transaction.
        """
        core = self._core
        if core.store.in_transaction:
            raise RuntimeError("compact() cannot run inside a transaction")
        with core.transaction():
            compacted = core.texts.compact_all()
        core.store.vacuum()
        return compacted

    # -- what sync reported ------------------------------------------------------

    def suppressed_count(self) -> int:
        """Concurrent writes of identical content the server counted (never reported)."""
        return int(self._core.reading().meta().get("suppressed", "0"))

    def refused(self) -> list[RefusedMutation]:
        """Writes set aside for good, in every space, with the reasons: the server's, or
        ``space_revoked`` for writes to a space this replica lost (never retried)."""
        self._core.reading()
        return self._core.outbox.refused()

    def pending_count(self) -> int:
        """Local writes not yet acknowledged by the server, in every space."""
        self._core.reading()
        return self._core.outbox.pending_count()


def sync_port(replica: Replica, space: SpaceKey = PRIVATE) -> SyncPort:
    """The sync side of `replica`'s space `space` (the private one by default), for the
    sync client and the stream tracker (not for apps)."""
    return SyncPort(replica._core, space)
