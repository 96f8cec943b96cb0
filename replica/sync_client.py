"""`SyncClient`: keeps one `Replica` in sync with the server, through a `Transport`.

All sync policy lives here; the transport only moves bytes. Rules:

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
   everything after them is retried ever more slowly.
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

Must not import `quietsync.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import attrs

from quietsync.conflicts import (
    ClockDriftError,
    Conflict,
    CrdtUpdateError,
    KindMismatchError,
    QuietsyncError,
    canonical_equal,
)
from quietsync.protocol import Change, Mutation
from quietsync.replica.conflict_feed import follow_conflicts
from quietsync.replica.errors import (
    ClockSkewError,
    ProtocolError,
    PushRefusedError,
    RequestRefusedError,
    ResyncRequiredError,
    SyncError,
    TransportError,
)
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.replica import Replica, sync_port
from quietsync.replica.sync_backoff import Backoff
from quietsync.replica.transport import LiveMessage, PullPage, PushAnswer, Transport
from quietsync.replica.transport_http import HttpTransport

__all__ = ["SyncClient", "SyncStatus", "SyncSummary"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TOO_BIG = frozenset({"body_too_large", "batch_too_large"})
_SERVER_INPUT = (RecursionError, UnicodeError, ValueError)
"""What decoding or storing a server's answer can raise besides our own errors (rule 9)."""
_UNAPPLICABLE = (KindMismatchError, CrdtUpdateError, *_SERVER_INPUT)
"""Why one pulled change may not apply while the rest of its page does (rule 10)."""


@contextlib.contextmanager
def _server_input() -> Iterator[None]:
    """Rule 9: whatever a server's answer makes the code below raise is a `ProtocolError`."""
    try:
        yield
    except _SERVER_INPUT as exc:
        if isinstance(exc, QuietsyncError):
            raise
        raise ProtocolError(f"the server sent what this replica cannot take: {exc!r:.200}") from exc


@attrs.frozen
class SyncStatus:
    """What a UI shows: reachable or not, writes waiting, the last error, the last good sync."""

    online: bool = False
    pending: int = 0
    last_error: str | None = None
    last_sync_at: float | None = None
    """Unix time (seconds) of the last complete push + pull."""
    error: QuietsyncError | None = None
    """The failure `last_error` describes, typed (a `SyncError` subclass, or the replica's
    `StorageError`); `ClockSkewError` while this device's clock is wrong, even online."""
    skipped_changes: int = 0
    """Pulled changes this client could not apply and went past (module docstring, rule 10)."""


@attrs.frozen
class SyncSummary:
    """What one `sync_once` did."""

    pushed: int = 0
    pulled: int = 0
    conflicts: int = 0
    suppressed: int = 0
    refused: int = 0
    skipped: int = 0
    """Entries dropped unsent because the server already held their value (rule 4)."""


class SyncClient:
    """Syncs `replica` with the server at `url` as the user of `token` (module docstring).

    Pass `transport=` instead of `url`/`token` to talk through another
    `Transport`. `on_refused` and `on_conflicts` hear about refused writes and
    conflicts (rule 7). `on_status` is called with every new
    `SyncStatus`; `statuses()` iterates them too.
    """

    def __init__(
        self,
        replica: Replica,
        url: str | None = None,
        *,
        token: str | None = None,
        transport: Transport | None = None,
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
        self._lock = asyncio.Lock()
        self._status = SyncStatus(pending=self._port.pending_count())
        self._watchers: set[asyncio.Queue[SyncStatus]] = set()
        self._wrote = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
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

    def _failed(self, exc: QuietsyncError) -> None:
        self._set_status(online=False, error=exc, last_error=str(exc), pending=self._pending())

    def _healthy(self, **changes: object) -> None:
        """Online; the only error left to show is a wrong clock (rule 11)."""
        error = self._clock_skew
        last_error = None if error is None else str(error)
        self._set_status(
            online=True, error=error, last_error=last_error, pending=self._pending(), **changes
        )

    def _local_write(self) -> None:
        self._wrote.set()
        if not self._port.closed:
            self._set_status(pending=self._port.pending_count())

    # -- one exchange ----------------------------------------------------------

    async def sync_once(self) -> SyncSummary:
        """Push the whole outbox, then pull until the log is exhausted.

        Raises `TransportError` (status goes offline) if the server cannot be
        reached; what was acknowledged before that stays acknowledged.
        """
        try:
            with _server_input():
                summary = await self.push()
                pulled = await self.pull()
        except SyncError as exc:
            self._failed(exc)
            raise
        self._healthy(last_sync_at=time.time())
        return attrs.evolve(summary, pulled=pulled)

    def _pending(self) -> int:
        return self._port.pending_count()

    async def push(self) -> SyncSummary:
        """Push the whole outbox in batches (rules 1-4); `sync_once` is this, then `pull`."""
        total = SyncSummary()
        async with self._lock:
            while batch := self._port.outbox_batch(self._batch_size):
                send = self._skip_held(batch)
                total = attrs.evolve(total, skipped=total.skipped + len(batch) - len(send))
                if send:
                    total = await self._push_batch(send, total)
                self._set_status(pending=self._pending())
        return total

    def _skip_held(self, batch: list[Mutation]) -> list[Mutation]:
        """Rule 4: drop entries whose value the server already holds under a newer stamp."""
        held, by_id = [], {m.id: m for m in batch}
        for mid, state in self._port.held_by_others(batch).items():
            m = by_id[mid]
            if (
                m.kind == "lww"
                and state.kind == "lww"
                and state.write.stamp > m.stamp
                and canonical_equal(state.write.value, m.value)
            ):
                held.append(mid)
        if held:
            self._port.mark_pushed(held)
        return [m for m in batch if m.id not in held]

    async def _push_batch(self, batch: list[Mutation], total: SyncSummary) -> SyncSummary:
        try:
            answer = await self._transport.push(batch)
        except PushRefusedError as exc:
            return attrs.evolve(total, refused=total.refused + self._set_aside(batch, exc.refused))
        except RequestRefusedError as exc:
            if exc.code not in _TOO_BIG:
                raise
            if len(batch) > 1:
                self._batch_size = max(1, len(batch) // 2)
                return total
            set_aside = self._set_aside(batch, [(batch[0].id, f"{exc.code}: {exc.message}")])
            return attrs.evolve(total, refused=total.refused + set_aside)
        self._accept(batch, answer)
        return attrs.evolve(
            total,
            pushed=total.pushed + len(batch),
            conflicts=total.conflicts + len(answer.conflicts),
            suppressed=total.suppressed + answer.suppressed,
        )

    def _set_aside(self, batch: list[Mutation], refused: list[tuple[str, str]]) -> int:
        by_id = {m.id: m for m in batch}
        if not refused or any(mid not in by_id for mid, _ in refused):
            raise ProtocolError(f"the server refused mutations not in the batch: {refused!r:.200}")
        with self._port.transaction():
            for mid, reason in refused:
                self._port.mark_refused(mid, reason)
                if reason.startswith("kind_mismatch"):  # the server's field will come in
                    m = by_id[mid]
                    self._port.forget_field(m.collection, m.key, m.field)
        drift = [why for _, why in refused if why.startswith("clock_drift")]
        if drift:
            self._clock_skew = ClockSkewError(
                f"this device's clock is ahead of the server's, so the server refused "
                f"{len(drift)} write(s) ({drift[0]:.120}); set the clock right "
                "(writes made meanwhile are set aside: Replica.refused())"
            )
        self._tell(self._on_refused, [RefusedMutation(by_id[mid], why) for mid, why in refused])
        return len(refused)

    def _accept(self, batch: list[Mutation], answer: PushAnswer) -> None:
        missing = [m.id for m in batch if m.id not in answer.outcomes]
        if missing:
            raise ProtocolError(f"the push answer has no outcome for {missing[:5]}")
        self._clock_skew = None  # the server took writes stamped by this clock
        with self._port.transaction():
            self._port.mark_pushed([m.id for m in batch])
            self._port.record_conflicts(answer.conflicts)
            self._port.add_suppressed(answer.suppressed)
        if answer.conflicts:
            self._tell(self._on_conflicts, answer.conflicts)

    @staticmethod
    def _tell(callback: Callable[[list[T]], object] | None, items: list[T]) -> None:
        """Rule 7: call the app's callback with what was just committed; never raise."""
        if callback is not None:
            try:
                callback(items)
            except Exception:
                log.exception("%r failed; sync goes on", callback)

    async def pull(self) -> int:
        """Pull and apply pages until the log is exhausted; returns how many changes came.

        A page that meets a local field of the other kind (written here, not yet
        refused by the server) is retried once after a push, which sets that
        write aside and lets the server's field in (rule 2); what still cannot
        be applied then is gone past (rule 10).
        """
        try:
            return await self._pull_or_resync(go_past=False)
        except KindMismatchError:
            await self.push()
        return await self._pull_or_resync(go_past=True)

    async def _pull_or_resync(self, go_past: bool) -> int:
        """Pull to the end; if the server cannot continue the cursor, resync first (rule 8)."""
        try:
            pulled = await self._pull_pages(go_past)
        except ResyncRequiredError as exc:
            queued = self._port.restart(exc.history, exc.reason)
            log.warning("sync: %s; starting over from 0 (%d writes queued again)", exc, queued)
            if queued:
                await self.push()
            pulled = await self._pull_pages(go_past)
        if self._port.sweeping:  # the pull from 0 is complete: the rest was removed
            self._port.finish_sweep()
        if new := await follow_conflicts(self._port, self._transport, self._pull_limit):
            self._tell(self._on_conflicts, new)
        return pulled

    async def _pull_pages(self, go_past: bool) -> int:
        pulled = 0
        async with self._lock:
            while True:
                since, history = self._port.cursor, self._port.history
                page = await self._transport.pull(since, self._pull_limit, history)
                _check_page(page, since, history)
                self._apply_page(page, go_past)
                pulled += len(page.changes)
                if not page.has_more:
                    return pulled

    def _apply_page(self, page: PullPage, go_past: bool) -> None:
        """Apply a page with its cursor; one by one if some of it cannot be applied (rule 10).

        One by one is not one transaction, which is fine: every change is
        idempotent, so a crash halfway pulls the page again from the old cursor.
        """
        try:
            self._merge(page.changes, page.cursor, page.history)
            return
        except _UNAPPLICABLE as exc:
            if isinstance(exc, KindMismatchError) and not go_past:
                raise  # `pull` pushes first: the local write of that kind is set aside
        skipped = 0
        for change in page.changes:
            try:
                self._merge([change])
            except _UNAPPLICABLE as exc:
                if isinstance(exc, KindMismatchError) and not go_past:
                    raise
                skipped += 1
                log.warning(
                    "sync: going past pulled change %r (%s/%s.%s): %r",
                    change.id,
                    change.collection,
                    change.key,
                    change.field,
                    exc,
                )
        self._port.apply_remote([], page.cursor, page.history)
        self._set_status(skipped_changes=self._status.skipped_changes + skipped)

    def _merge(
        self, changes: Sequence[Change], cursor: int | None = None, history: str | None = None
    ) -> None:
        try:
            self._port.apply_remote(changes, cursor, history)
        except ClockDriftError as exc:
            raise ClockSkewError(
                f"a pulled change is stamped too far ahead of this device's clock ({exc}); "
                "this device's clock is probably behind: set it right"
            ) from exc

    # -- the live loop ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the live loop in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="quietsync-sync")

    async def stop(self) -> None:
        """Stop the live loop and close the transport; the outbox stays as it is.

        The client can be started (or used for `sync_once`) again afterwards.
        """
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._transport.close()
        self._set_status(online=False)

    async def __aenter__(self) -> SyncClient:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with _server_input():
                    await self.sync_once()
                    await self._follow_live()  # returns when the server asks for a pull
            except QuietsyncError as exc:  # SyncError, or the replica failing (StorageError)
                self._failed(exc)
                log.info("sync: %s; retrying after backoff", exc)
            except Exception as exc:  # a failure nobody foresaw: reported, never the loop's end
                log.exception("sync: unexpected failure; retrying after backoff")
                self._failed(SyncError(f"unexpected failure: {exc!r:.200}"))
            await self._pause(self._backoff.next_delay())

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _follow_live(self) -> None:
        """Follow the socket until the server asks for a pull (return) or it drops (raise)."""
        loop = asyncio.get_running_loop()
        opened = loop.time()
        try:
            async with self._transport.live(self._port.cursor, self._port.history) as messages:
                reader = asyncio.create_task(self._read_live(messages))
                pusher = asyncio.create_task(self._push_on_writes())
                try:
                    done, _ = await asyncio.wait(
                        {reader, pusher}, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        task.result()
                finally:
                    for task in (reader, pusher):
                        task.cancel()
                    await asyncio.gather(reader, pusher, return_exceptions=True)
        finally:
            if loop.time() - opened >= self._backoff.settled:  # up for a while: progress
                self._backoff.reset()

    async def _read_live(self, messages: AsyncIterator[LiveMessage]) -> None:
        async for msg in messages:
            if msg.type == "pull":
                await self.pull()
                return
            if msg.type == "changes" and msg.changes:
                _check_live(msg)
                if not self._apply_live(msg):
                    await self.pull()
                self._backoff.reset()
                self._healthy(last_sync_at=time.time())
        raise TransportError("the live socket was closed by the server")

    def _apply_live(self, msg: LiveMessage) -> bool:
        """Apply a live batch that continues the cursor; False if a pull must fill in."""
        cursor = self._port.cursor
        fresh = [c for c in msg.changes if (c.seq or 0) > cursor]
        if not fresh:
            return True
        if self._lock.locked() or msg.after is None or msg.after > cursor:
            return False  # a gap (or a pull in flight): a pull fills it in order
        try:
            self._merge(fresh, msg.cursor)
        except _UNAPPLICABLE:
            return False  # `pull` knows how to get past these (rules 2 and 10)
        return True

    async def _push_on_writes(self) -> None:
        while True:
            await self._wrote.wait()
            await asyncio.sleep(self._coalesce)  # let a burst of writes become one push
            self._wrote.clear()
            await self.push()
            self._backoff.reset()
            self._healthy()


def _check_page(page: PullPage, since: int, history: str | None) -> None:
    """Rule 9: refuse a pull page that cannot follow `since` (``docs/protocol.md``, "Pull")."""
    if history is not None and page.history is not None and page.history != history:
        raise ProtocolError(
            f"a pull in history {history!r} was answered from history {page.history!r} "
            "(the server should have asked for a resync)"
        )
    if page.cursor < since:
        raise ProtocolError(f"the pull cursor went back from {since} to {page.cursor}")
    if page.has_more and (page.cursor == since or not page.changes):
        raise ProtocolError(
            f"the server has more after {since} but its page does not advance "
            f"(cursor {page.cursor}, {len(page.changes)} changes)"
        )
    _check_seqs(page.changes, since, page.cursor, "a pull page")


def _check_live(msg: LiveMessage) -> None:
    """Rule 9: a live batch holds changes after `after` up to `cursor`, no others."""
    if msg.after is not None and msg.after > msg.cursor:
        raise ProtocolError(f"a live batch after {msg.after} ends before it, at {msg.cursor}")
    _check_seqs(msg.changes, msg.after or 0, msg.cursor, "a live batch")


def _check_seqs(changes: Sequence[Change], after: int, cursor: int, what: str) -> None:
    wrong = [c.seq for c in changes if c.seq is None or not after < c.seq <= cursor]
    if wrong:
        raise ProtocolError(f"{what} in ({after}, {cursor}] holds changes with seqs {wrong[:5]}")
