"""`SpaceSync`: one space's exchange with the server, for the `SyncClient`.

The client syncs a set of spaces (`quietsync.replica.sync_client`, whose
module docstring lists the rules); each space has one `SpaceSync`: its own
push of the space's outbox entries, its own pull from its own cursor, its
own conflict feed and its own live socket, all through a `SyncPort` bound to
the space and a transport told the space's id (None: the private space,
which the server knows without a ``space`` parameter). What is the client's
(the status, the app's callbacks, the clock-skew flag, the set of spaces) it
reaches through its `SyncHost`.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import attrs

from quietsync.conflicts import (
    ClockDriftError,
    Conflict,
    CrdtUpdateError,
    KindMismatchError,
    canonical_equal,
)
from quietsync.protocol import Change, Mutation
from quietsync.protocol.ratelog import RateLimitedLog, describe
from quietsync.replica.conflict_feed import follow_conflicts
from quietsync.replica.errors import (
    ClockSkewError,
    ProtocolError,
    PushRefusedError,
    RequestRefusedError,
    ResyncRequiredError,
    TransportError,
)
from quietsync.replica.outbox import RefusedMutation
from quietsync.replica.sync_backoff import Backoff
from quietsync.replica.sync_port import SyncPort
from quietsync.replica.transport import LiveMessage, PullPage, PushAnswer, Transport

__all__ = ["SERVER_INPUT", "SpaceSync", "SyncHost", "SyncSummary"]

log = logging.getLogger("quietsync.replica.sync_client")

_TOO_BIG = frozenset({"body_too_large", "batch_too_large"})
SERVER_INPUT = (RecursionError, UnicodeError, ValueError)
"""What decoding or storing a server's answer can raise besides our own errors (rule 9)."""
_UNAPPLICABLE = (KindMismatchError, CrdtUpdateError, *SERVER_INPUT)
"""Why one pulled change may not apply while the rest of its page does (rule 10)."""


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

    def __add__(self, other: SyncSummary) -> SyncSummary:
        pairs = zip(attrs.astuple(self), attrs.astuple(other), strict=True)
        return SyncSummary(*(a + b for a, b in pairs))


class SyncHost(Protocol):
    """What a `SpaceSync` reports to, and shares with, its client."""

    _clock_skew: ClockSkewError | None

    def _tell_refused(self, items: list[RefusedMutation]) -> None: ...
    def _tell_conflicts(self, items: list[Conflict]) -> None: ...
    def _healthy(self, space: str | None, **changes: object) -> None: ...
    def _went_past(self, skipped: int) -> None: ...
    def _update_pending(self) -> None: ...
    def _memberships_changed(self) -> None: ...


class SpaceSync:
    """The exchange of one space (`space`: its id, None for the private space)."""

    def __init__(
        self,
        host: SyncHost,
        port: SyncPort,
        transport: Transport,
        *,
        space: str | None,
        batch_size: int,
        pull_limit: int,
        coalesce: float,
        backoff: Backoff,
    ) -> None:
        self.space = space
        self.backoff = backoff
        self.log = RateLimitedLog(log)
        """This space's failures that repeat on every retry (a server answering 500 for
        hours): one line per cause a minute, never a traceback (`RateLimitedLog`)."""
        self.wrote = asyncio.Event()
        """Set by the client after local writes: the live loop pushes soon after."""
        self._host = host
        self._port = port
        self._transport = transport
        self._batch_size = batch_size
        self._pull_limit = pull_limit
        self._coalesce = coalesce
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """How log lines name this space's sync."""
        return "sync" if self.space is None else f"sync of space {self.space!r}"

    async def sync_once(self) -> SyncSummary:
        """Push the space's outbox, then pull until its log is exhausted."""
        summary = await self.push()
        return attrs.evolve(summary, pulled=await self.pull())

    async def push(self) -> SyncSummary:
        """Push the space's outbox in batches (rules 1-4)."""
        total = SyncSummary()
        async with self._lock:
            while batch := self._port.outbox_batch(self._batch_size):
                send = self._skip_held(batch)
                total = attrs.evolve(total, skipped=total.skipped + len(batch) - len(send))
                if send:
                    total = await self._push_batch(send, total)
                self._host._update_pending()
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
            answer = await self._transport.push(batch, self.space)
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
            self._host._clock_skew = ClockSkewError(
                f"this device's clock is ahead of the server's, so the server refused "
                f"{len(drift)} write(s) ({drift[0]:.120}); set the clock right "
                "(writes made meanwhile are set aside: Replica.refused())"
            )
        self._host._tell_refused(
            [RefusedMutation(by_id[mid], why, self.space) for mid, why in refused]
        )
        return len(refused)

    def _accept(self, batch: list[Mutation], answer: PushAnswer) -> None:
        missing = [m.id for m in batch if m.id not in answer.outcomes]
        if missing:
            raise ProtocolError(f"the push answer has no outcome for {missing[:5]}")
        self._host._clock_skew = None  # the server took writes stamped by this clock
        with self._port.transaction():
            self._port.mark_pushed([m.id for m in batch])
            self._port.record_conflicts(answer.conflicts)
            self._port.add_suppressed(answer.suppressed)
        if answer.conflicts:
            self._host._tell_conflicts(answer.conflicts)

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
            self.log.failure(
                f"{self.name}: resync",
                f"{self.name}: {describe(exc)}; starting over from 0"
                f" ({queued} writes queued again)",
            )
            if queued:
                await self.push()
            pulled = await self._pull_pages(go_past)
        if self._port.sweeping:  # the pull from 0 is complete: the rest was removed
            self._port.finish_sweep()
        if new := await follow_conflicts(self._port, self._transport, self._pull_limit):
            self._host._tell_conflicts(new)
        return pulled

    async def _pull_pages(self, go_past: bool) -> int:
        pulled = 0
        async with self._lock:
            while True:
                since, history = self._port.cursor, self._port.history
                page = await self._transport.pull(since, self._pull_limit, history, self.space)
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
        self._host._went_past(skipped)

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

    # -- the live socket --------------------------------------------------------

    async def follow_live(self) -> None:
        """Follow the socket until the server asks for a pull (return) or it drops (raise)."""
        loop = asyncio.get_running_loop()
        opened = loop.time()
        try:
            live = self._transport.live(self._port.cursor, self._port.history, self.space)
            async with live as messages:
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
            if loop.time() - opened >= self.backoff.settled:  # up for a while: progress
                self.backoff.reset()

    async def _read_live(self, messages: AsyncIterator[LiveMessage]) -> None:
        async for msg in messages:
            if msg.type == "pull":
                await self.pull()
                return
            if msg.type == "spaces":
                if self.space is None:  # only the private space's sockets carry it
                    self._host._memberships_changed()
                continue
            if msg.type == "changes" and msg.changes:
                _check_live(msg)
                if not self._apply_live(msg):
                    await self.pull()
                self.backoff.reset()
                self._host._healthy(self.space, last_sync_at=time.time())
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
            await self.wrote.wait()
            await asyncio.sleep(self._coalesce)  # let a burst of writes become one push
            self.wrote.clear()
            await self.push()
            self.backoff.reset()
            self._host._healthy(self.space)


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
