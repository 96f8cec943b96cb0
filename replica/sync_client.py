"""`SyncClient`: keeps one `Replica` in sync with the server, through a `Transport`.

All sync policy lives here and in `replica.space_sync` (one space's
exchange); the transport only moves bytes. Rules 1-11 hold for every space
on its own (its own outbox entries, cursor, history, conflict position,
live socket and backoff):

1. **Removed only when acknowledged.** An outbox entry leaves the outbox when
   the server's answer names its id (any outcome), or when rule 4 skips it.
   A push that failed in transit (timeout, reset, 5xx) leaves the outbox as it
   was, so the retry sends the very same mutation ids and the server's dedupe
   answers them with their first outcome.
2. **A refusal never wedges the queue.** A 422 names every refused mutation:
   each is set aside (`Replica.refused()` lists them) in one transaction, and
   the rest is pushed again. A lone mutation too large for the server's body
   or batch limit is set aside the same way; a larger batch is halved first.
3. **Server reports land once.** Conflicts from push answers go to the
   replica's conflict log (deduplicated there), suppressed counts to its
   counter, together with the acknowledgement, in one transaction. Pulls never
   report anything, so the client's own changes coming back are duplicates,
   never conflicts.
4. **What the server already holds is not pushed.** An lww entry whose field
   now holds, from another node (so from the server), a newer write with a
   canonical-equal value is dropped from the outbox unsent: the server would
   only drop it and count a suppressed event.
5. **Pages, never the whole log.** Pulls go page by page, each page applied
   with its cursor in one transaction.
6. **Live, then quiet.** `start()` runs one loop: push + pull, then follow the
   live socket (a gap or a ``pull`` message triggers a pull), pushing a short
   `coalesce` delay after local writes. Any failure, and a socket the server
   ends with ``pull``, waits `Backoff` (full jitter, capped), then starts over
   with push + pull: it never busy-loops. Only real progress resets the
   backoff: a live batch applied, local writes pushed, or a socket that stayed
   up `Backoff.settled` seconds (10); a server that answers pulls but breaks
   everything after them is retried ever more slowly. Each failure is logged
   one line per cause a minute, with a count of its repeats, never a traceback
   per retry (`SpaceSync.log`).
7. **The app hears about refusals and conflicts, after the commit.**
   `on_refused` gets the mutations just set aside, `on_conflicts` the
   conflicts just recorded; an app turns them into whatever it shows (the
   chat layer's `Notifications.write_refused` / `write_conflicts` write
   notification records). A callback that raises is logged; sync goes on.
8. **A cursor the server cannot continue is started over.** A pull answered
   ``409 resync`` (`ResyncRequiredError`: the server was restored or reset,
   went back, or compacted deletes past the cursor) makes the replica start
   from 0 in the server's history, after queueing every field again (the
   server may have lost writes) or while sweeping the records it removed
   (`quietsync.replica.resync`); then pushes and pulls as usual. Nothing
   acknowledged is lost, and nobody has to do anything.
9. **Nothing a server sends escapes the error tree or spins.** An answer that
   is not the protocol's (not JSON, wrong types, too deep, over
   `max_answer_bytes`, a lone surrogate where text goes) is a `ProtocolError`;
   so is a page that cannot be the next one: ``has_more`` without advancing
   (no change, or a cursor that stays or goes back), another history, seqs
   outside ``(since, cursor]``, and likewise a live batch whose ``after``,
   seqs and ``cursor`` disagree. It lands in `status.error`, the loop backs
   off, and `stop()` never re-raises it.
10. **A pulled change that cannot be applied is gone past, not a wedge.** A
    change of the other kind than the replica's field (after the push that
    would set a local write of that kind aside), bad CRDT bytes, a value or
    name this replica cannot store: the rest of its page is applied, the
    cursor moves past it, a warning is logged and `status.skipped_changes`
    counts it. The field keeps what the replica held until its next change.
11. **A wrong clock is the user's to fix, and said once.** Writes the server
    refuses for ``clock_drift`` are set aside like any refusal, and the
    status shows `ClockSkewError` (online or not) until a push is accepted;
    a pulled stamp too far ahead of this device is a `ClockSkewError` too.

12. **A set of spaces.** ``spaces=None`` syncs every space the user is a
    member of: the client reads ``GET /v1/spaces`` at start and again
    whenever the private space's socket says ``{"type": "spaces"}`` or a
    space's socket is closed for revocation (4003); a server without that
    endpoint (404) is synced as before, private space only. An explicit
    collection of ids syncs those alone (a ``u:`` id is the private space).
    A space added (a new membership, or `add_space`) is pulled from cursor 0.
13. **A space lost is purged, and its writes set aside.** A shared space
    answered ``404 space_not_found``, closed with 4003, or missing from
    ``GET /v1/spaces`` is purged from the replica (records, texts,
    conflicts, cursor), and its writes not yet acknowledged are set aside
    with reason ``space_revoked``: `Replica.refused()` lists them,
    `on_refused` hears of them; nothing is silently lost. `drop_space`
    does the same at the app's request (reason ``space_dropped``), or only
    stops syncing with ``purge=False``. The private space is never purged.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

import attrs

from quietsync.conflicts import Conflict, QuietsyncError
from quietsync.protocol.ratelog import describe
from quietsync.replica.errors import (
    ClockSkewError,
    ProtocolError,
    RequestRefusedError,
    SpaceNotFoundError,
    SpaceRevokedError,
    SyncError,
)
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.replica import Replica, sync_port
from quietsync.replica.space_sync import SERVER_INPUT, SpaceSync, SyncSummary
from quietsync.replica.spaces import PRIVATE, SpaceKey, space_key
from quietsync.replica.sync_backoff import Backoff
from quietsync.replica.transport import Transport
from quietsync.replica.transport_http import HttpTransport

__all__ = ["SyncClient", "SyncStatus", "SyncSummary"]

log = logging.getLogger(__name__)
T = TypeVar("T")

REVOKED, DROPPED = "space_revoked", "space_dropped"
"""The reasons a lost (rule 13) or dropped space's pending writes are set aside with."""
_LOST = (SpaceNotFoundError, SpaceRevokedError)


@contextlib.contextmanager
def _server_input() -> Iterator[None]:
    """Rule 9: whatever a server's answer makes the code below raise is a `ProtocolError`."""
    try:
        yield
    except SERVER_INPUT as exc:
        if isinstance(exc, QuietsyncError):
            raise
        raise ProtocolError(f"the server sent what this replica cannot take: {exc!r:.200}") from exc


@attrs.frozen
class SyncStatus:
    """What a UI shows: reachable or not, writes waiting, the last error, the last good sync."""

    online: bool = False
    pending: int = 0
    """Local writes not yet acknowledged, in every space."""
    last_error: str | None = None
    last_sync_at: float | None = None
    """Unix time (seconds) of the last complete push + pull (of any space)."""
    error: QuietsyncError | None = None
    """The failure `last_error` describes, typed (a `SyncError` subclass, or the replica's
    `StorageError`); `ClockSkewError` while this device's clock is wrong, even online.
    With several spaces failing, the private space's failure, else the first by id."""
    skipped_changes: int = 0
    """Pulled changes this client could not apply and went past (module docstring, rule 10)."""
    spaces: frozenset[str | None] = frozenset()
    """The spaces being synced (None: the private space)."""


class SyncClient:
    """Syncs `replica` with the server at `url` as the user of `token` (module docstring).

    Pass `transport=` instead of `url`/`token` to talk through another
    `Transport`. `spaces` chooses the spaces (rule 12): None for every space
    the user is a member of, or a collection of space ids. `on_refused` and
    `on_conflicts` hear about refused writes and conflicts (rule 7).
    `on_status` is called with every new `SyncStatus`; `statuses()` iterates
    them too.
    """

    def __init__(
        self,
        replica: Replica,
        url: str | None = None,
        *,
        token: str | None = None,
        transport: Transport | None = None,
        spaces: Iterable[str] | None = None,
        batch_size: int = 500,
        pull_limit: int = 1000,
        on_refused: Callable[[list[RefusedMutation]], object] | None = None,
        on_conflicts: Callable[[list[Conflict]], object] | None = None,
        on_status: Callable[[SyncStatus], object] | None = None,
        coalesce: float = 0.005,
        backoff: Backoff | None = None,
    ) -> None:
        if (transport is None) == (url is None):
            raise ValueError("give either url (with token) or transport, not both")
        if transport is None:
            if not isinstance(token, str) or not token:
                raise ValueError("a url needs a non-empty bearer token")
            transport = HttpTransport(str(url), token=token)
        if batch_size < 1 or pull_limit < 1:
            raise ValueError("batch_size and pull_limit must be >= 1")
        if isinstance(spaces, str):
            raise ValueError("spaces is a collection of space ids, not one id")
        self.replica = replica
        self._port = sync_port(replica)
        self._transport = transport
        self._batch_size = batch_size
        self._pull_limit = pull_limit
        self._on_refused = on_refused
        self._on_conflicts = on_conflicts
        self._on_status = on_status
        self._coalesce = coalesce
        self._backoff = backoff or Backoff()
        self._every_space = spaces is None
        self._syncs: dict[SpaceKey, SpaceSync] = {}
        self._tasks: dict[SpaceKey, asyncio.Task[None]] = {}
        self._members: asyncio.Task[None] | None = None  # while started
        for space in [PRIVATE] if spaces is None else {space_key(s) for s in spaces}:
            self._add(space)
        self._dropped: set[str] = set()  # spaces=None: shared spaces the app dropped
        self._errors: dict[SpaceKey, QuietsyncError] = {}
        self._status = SyncStatus(pending=self._port.pending_count(), spaces=frozenset(self._syncs))
        self._watchers: set[asyncio.Queue[SyncStatus]] = set()
        self._stopping = asyncio.Event()
        self._news = asyncio.Event()  # the user's memberships may have changed (rule 12)
        self._clock_skew: ClockSkewError | None = None  # rule 11, until a push is accepted
        self._port.on_outbox(self._local_write)  # for the client's lifetime: pending count, wakeups

    # -- status ------------------------------------------------------------------

    @property
    def status(self) -> SyncStatus:
        return self._status

    def _set_status(self, **changes: object) -> None:
        new = attrs.evolve(self._status, **changes)  # type: ignore[arg-type]
        if new == self._status:
            return
        self._status = new
        for queue in self._watchers:
            queue.put_nowait(new)
        if self._on_status is not None:
            try:
                self._on_status(new)
            except Exception:
                log.exception("on_status callback failed; sync goes on")

    async def statuses(self) -> AsyncIterator[SyncStatus]:
        """The current status, then every change, until the consumer stops iterating."""
        queue: asyncio.Queue[SyncStatus] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            yield self._status
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)

    def _show(self, **changes: object) -> None:
        """The status from the spaces' errors: online when none failed (a wrong clock aside)."""
        failing = sorted(self._errors, key=lambda s: (s is not None, s or ""))
        error = self._errors[failing[0]] if failing else self._clock_skew
        self._set_status(
            online=not failing,
            error=error,
            last_error=None if error is None else str(error),
            pending=self._port.pending_count(),
            spaces=frozenset(self._syncs),
            **changes,
        )

    def _failed(self, space: SpaceKey, exc: QuietsyncError) -> None:
        self._errors[space] = exc
        self._show()

    def _healthy(self, space: SpaceKey, **changes: object) -> None:
        """`space` synced; the only error left to show may be a wrong clock (rule 11)."""
        self._errors.pop(space, None)
        self._show(**changes)

    def _went_past(self, skipped: int) -> None:
        self._set_status(skipped_changes=self._status.skipped_changes + skipped)

    def _update_pending(self) -> None:
        self._set_status(pending=self._port.pending_count())

    def _local_write(self) -> None:
        for sync in self._syncs.values():
            sync.wrote.set()
        if not self._port.closed:
            self._update_pending()

    def _tell_refused(self, items: list[RefusedMutation]) -> None:
        self._tell(self._on_refused, items)

    def _tell_conflicts(self, items: list[Conflict]) -> None:
        self._tell(self._on_conflicts, items)

    @staticmethod
    def _tell(callback: Callable[[list[T]], object] | None, items: list[T]) -> None:
        """Rule 7: call the app's callback with what was just committed; never raise."""
        if callback is not None and items:
            try:
                callback(items)
            except Exception:
                log.exception("%r failed; sync goes on", callback)

    # -- the set of spaces (rules 12 and 13) -----------------------------------------------

    def _add(self, space: SpaceKey) -> SpaceSync:
        backoff = (
            self._backoff
            if space is None
            else Backoff(
                self._backoff.base,
                self._backoff.cap,
                self._backoff.rng,
                settled=self._backoff.settled,
            )
        )
        sync = self._syncs[space] = SpaceSync(
            self,
            sync_port(self.replica, space),
            self._transport,
            space=space,
            batch_size=self._batch_size,
            pull_limit=self._pull_limit,
            coalesce=self._coalesce,
            backoff=backoff,
        )
        if self._running:
            self._tasks[space] = asyncio.create_task(self._run(sync), name=f"quietsync-{space}")
        return sync

    @property
    def _running(self) -> bool:
        return self._members is not None

    async def add_space(self, space_id: str) -> None:
        """Sync the space `space_id` too, from cursor 0 if the replica holds none of it."""
        space = space_key(space_id)
        if space is not None:
            self._dropped.discard(space)
        if space not in self._syncs:
            self._add(space)
            self._show()

    async def drop_space(self, space_id: str, *, purge: bool = True) -> None:
        """Stop syncing `space_id`; with `purge`, forget it locally (rule 13): its records
        go, its writes not yet acknowledged are set aside (reason ``space_dropped``)."""
        space = space_key(space_id)
        if space is not None:
            self._dropped.add(space)
        await self._stop_space(space)
        if purge and space is not None:
            self._purge(space, DROPPED)
        self._show()

    async def _stop_space(self, space: SpaceKey) -> None:
        self._syncs.pop(space, None)
        self._errors.pop(space, None)
        task = self._tasks.pop(space, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _purge(self, space: str, reason: str) -> None:
        refused = sync_port(self.replica, space).purge(reason)
        log.warning("sync: space %r purged (%s); %d writes set aside", space, reason, len(refused))
        self._tell_refused([RefusedMutation(m, reason, space) for m in refused])

    async def _lose(self, space: SpaceKey, exc: SyncError) -> None:
        """Rule 13: the user cannot read `space` any more."""
        if space is None:  # never purged: an error like any other
            raise exc
        await self._stop_space(space)
        self._purge(space, REVOKED)
        self._memberships_changed()
        self._show()

    def _memberships_changed(self) -> None:
        self._news.set()

    async def _refresh_spaces(self) -> None:
        """Read the user's spaces and sync those chosen; purge the ones gone (rules 12-13)."""
        try:
            listed = await self._transport.spaces()
        except RequestRefusedError as exc:
            if exc.status == 404 and not isinstance(exc, SpaceNotFoundError):
                return  # a server from before spaces: the private space is all there is
            raise
        shared = {s.id for s in listed if not s.private}
        gone = [s for s in self._syncs if s is not None and s not in shared]
        if self._every_space:
            gone += sorted(sync_port(self.replica).local_spaces() - shared - set(self._syncs))
            for space in sorted(shared - self._dropped - set(self._syncs)):
                self._add(space)
        for space in gone:
            await self._stop_space(space)
            self._purge(space, REVOKED)
        if gone:
            self._show()  # a purged space's error goes with it
        self._set_status(spaces=frozenset(self._syncs), pending=self._port.pending_count())

    # -- one exchange ----------------------------------------------------------

    async def sync_once(self) -> SyncSummary:
        """Push every synced space's outbox, then pull it until its log is exhausted.

        Raises the first `SyncError` met (status goes offline) once every space
        was tried, e.g. `TransportError` if the server cannot be reached; what
        was acknowledged before that stays acknowledged.
        """
        total, first = SyncSummary(), None
        try:
            if self._every_space:
                with _server_input():
                    await self._refresh_spaces()
        except SyncError as exc:
            self._failed(PRIVATE, exc)
            raise
        for sync in list(self._syncs.values()):
            try:
                total += await self._sync_space(sync)
            except SyncError as exc:
                first = first or exc
        if first is not None:
            raise first
        return total

    async def _sync_space(self, sync: SpaceSync) -> SyncSummary:
        try:
            with _server_input():
                summary = await sync.sync_once()
        except _LOST as exc:
            await self._lose(sync.space, exc)
            return SyncSummary()
        except SyncError as exc:
            self._failed(sync.space, exc)
            raise
        self._healthy(sync.space, last_sync_at=time.time())
        return summary

    async def push(self) -> SyncSummary:
        """Push every synced space's outbox in batches (rules 1-4)."""
        total = SyncSummary()
        for sync in list(self._syncs.values()):
            total += await sync.push()
        return total

    async def pull(self) -> int:
        """Pull every synced space to the end of its log; how many changes came."""
        return sum([await sync.pull() for sync in list(self._syncs.values())])

    # -- the live loop ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the live loops in the background, one per space (idempotent)."""
        if self._running:
            return
        self._stopping.clear()
        self._members = asyncio.create_task(self._follow_members(), name="quietsync-spaces")
        for space, sync in self._syncs.items():
            self._tasks[space] = asyncio.create_task(self._run(sync), name=f"quietsync-{space}")
        if self._every_space:
            self._news.set()

    async def stop(self) -> None:
        """Stop the live loops and close the transport; the outbox stays as it is.

        The client can be started (or used for `sync_once`) again afterwards.
        """
        self._stopping.set()
        tasks = [*self._tasks.values(), *([self._members] if self._members else [])]
        self._tasks, self._members = {}, None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sync in self._syncs.values():
            sync.log.flush(logging.INFO)  # the repeats counted since each cause's last line
        await self._transport.close()
        self._set_status(online=False)

    async def __aenter__(self) -> SyncClient:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run(self, sync: SpaceSync) -> None:
        """One space's loop: sync, follow its socket, back off on failure (rule 6)."""
        while not self._stopping.is_set():
            try:
                with _server_input():
                    await sync.sync_once()
                    self._healthy(sync.space, last_sync_at=time.time())
                    await sync.follow_live()  # returns when the server asks for a pull
            except _LOST as exc:
                if sync.space is not None:
                    await self._lose(sync.space, exc)
                    return
                self._failed(sync.space, exc)
            except QuietsyncError as exc:  # SyncError, or the replica failing (StorageError)
                self._failed(sync.space, exc)
                sync.log.failure(
                    f"{sync.name}: {type(exc).__name__}",
                    f"{sync.name}: {describe(exc)}; retrying after backoff",
                    logging.INFO,
                )
            except Exception as exc:  # a failure nobody foresaw: reported, never the loop's end
                sync.log.failure(
                    f"{sync.name}: {type(exc).__name__}",
                    f"{sync.name}: unexpected failure, {describe(exc)}; retrying after backoff",
                    logging.ERROR,
                    exc_info=exc,
                )
                self._failed(sync.space, SyncError(f"unexpected failure: {exc!r:.200}"))
            await self._pause(sync.backoff.next_delay())

    async def _follow_members(self) -> None:
        """Re-read the user's spaces whenever the server says they changed (rule 12)."""
        backoff = Backoff(self._backoff.base, self._backoff.cap, self._backoff.rng)
        while not self._stopping.is_set():
            await self._news.wait()
            self._news.clear()
            try:
                with _server_input():
                    await self._refresh_spaces()
                backoff.reset()
            except QuietsyncError as exc:
                self._failed(PRIVATE, exc)
                self._news.set()
                await self._pause(backoff.next_delay())

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
