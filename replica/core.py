"""`ReplicaCore`: the state of one open replica file, shared by its two faces.

An app talks to `quietsync.replica.replica.Replica` (put, get, query, text,
subscribe); the sync client and the stream tracker talk to
`quietsync.replica.sync_port.SyncPort` (outbox, remote changes, cursors).
Both are thin faces over one core: the store, the file lock, the clock, the
outbox, the open text documents (`replica.texts`), the subscriptions, and
the one `transaction` mechanism that keeps them consistent:

1. **Stamps only grow.** The clock's high-water mark and the last mutation
   number are persisted with the outermost transaction, so a reopened replica
   never reissues a stamp or an id.
2. **Subscribers hear about committed changes only**, after the outermost
   transaction commits; a failing subscriber never undoes a write. Outbox
   listeners (the sync client's cue to push) are called after a commit that
   queued mutations.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

from quietsync.conflicts import HLC, Clock, validate_node_id, wall_clock_ms
from quietsync.replica.errors import NodeIdMismatchError, ReplicaClosedError
from quietsync.replica.local import LocalWriter
from quietsync.replica.lockfile import LockFile
from quietsync.replica.outbox import Outbox
from quietsync.replica.records import yjs_client_id
from quietsync.replica.store import SqliteStore, Store
from quietsync.replica.subscriptions import ChangeEvent, Subscriptions, Unsubscribe
from quietsync.replica.texts import TextFields

__all__ = ["ReplicaCore"]


class ReplicaCore:
    """One open replica file (see the module docstring)."""

    def __init__(self, store: Store, lock: LockFile, node_id: str, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.node_id = node_id
        self.outbox = Outbox(store, node_id, int(store.meta().get("mutation_n", "0")))
        self.subs = Subscriptions()
        self.texts = TextFields(store, yjs_client_id(node_id))
        self.writer = LocalWriter(store, clock, self.outbox, self.texts)
        self.events: list[ChangeEvent] = []
        """Changes of the open transaction, for the subscribers once it commits."""
        self.remote_mark = self.outbox.last_n
        """The last mutation number queued before the latest remote change was applied
        (every pending one, at open): see `SyncPort.held_by_others`. Too high is only slower."""
        self.closed = False
        self._lock = lock
        self._outbox_listeners: list[Callable[[], object]] = []

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        node_id: str | None,
        max_drift_ms: int,
        wall: Callable[[], int] = wall_clock_ms,
    ) -> ReplicaCore:
        """Lock, open (creating or migrating) the file, and load its node id and clock."""
        if node_id is not None:
            validate_node_id(node_id)
        path = Path(path)
        lock = LockFile.acquire(path)
        try:
            store = SqliteStore.open(path)
        except BaseException:
            lock.release()
            raise
        try:
            meta = store.meta()
            stored = meta.get("node_id")
            if stored is None:
                stored = node_id or f"n{secrets.token_hex(8)}"
                with store.transaction():
                    store.set_meta({"node_id": stored})
            elif node_id is not None and node_id != stored:
                raise NodeIdMismatchError(path, stored, node_id)
            last = HLC.parse(meta["clock"]) if "clock" in meta else None
            clock = Clock(stored, max_drift_ms=max_drift_ms, wall=wall, last=last)
        except BaseException:
            store.close()
            lock.release()
            raise
        return cls(store, lock, stored, clock)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store.close()
            self._lock.release()

    def reading(self) -> Store:
        """The store, unless the replica is closed (`ReplicaClosedError`)."""
        if self.closed:
            raise ReplicaClosedError(f"replica {self.store.path} is closed")
        return self.store

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit (nesting allowed); subscribers and listeners hear after the commit."""
        self.reading()
        outer = not self.store.in_transaction
        mark = len(self.events)
        last_n = self.outbox.last_n
        try:
            with self.store.transaction():
                yield
                if outer:
                    self.store.set_meta(
                        {"clock": str(self.clock.last), "mutation_n": str(self.outbox.last_n)}
                    )
        except BaseException:
            del self.events[mark:]
            self.texts.rolled_back()
            raise
        if outer:
            self.texts.committed()
            events, self.events = self.events, []
            self.subs.notify(events)
            if self.outbox.last_n != last_n:
                for listener in list(self._outbox_listeners):
                    listener()

    def on_outbox(self, listener: Callable[[], object]) -> Unsubscribe:
        """Call `listener()` after each commit that queued mutations."""
        self._outbox_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._outbox_listeners:
                self._outbox_listeners.remove(listener)

        return unsubscribe
