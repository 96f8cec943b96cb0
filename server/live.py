"""The live WebSocket: each user's committed changes, pushed to their sockets as they commit.

One `LiveHub` per app. A socket follows one space (``?space=``, the user's
private space by default). A push (or a job flush) that commits publishes its
numbered changes to the hub, with the head they continue from (`after`) and
their size in bytes, and the hub hands them to every `Subscription` of that
space. Each socket is served by a `LiveSession`:

1. subscribe first (so nothing committed from now on can be missed), then read
   the user's head and send ``{"type": "hello", "cursor": N, "history": H}``;
2. if the client gave ``?since=S`` with S < N, send the fields changed after S
   from the store, page by page (bounded in bytes), as ``{"type": "changes",
   "after": A, "changes": [...], "cursor": C}``: the message holds every change
   after A up to C, but those overwritten later (seqs have gaps);
3. forward each published batch the same way, in order: a change at or below
   the cursor already sent is skipped, and a batch that does not continue it
   (one that overtook another) is preceded by what the store holds between;
4. a subscription holding more than `limit` unsent changes or `max_bytes` of
   them (a client reading too slowly) is dropped: the client gets ``{"type":
   "pull", "cursor": C}`` (C = the last cursor sent) and the socket is closed
   with code 4000, so the server never buffers without bound. The client
   pulls, then reconnects;
5. a user who loses read access to the space (`LiveHub.revoke`, after the
   membership change committed) has each of their sockets on it closed with
   code 4003 (`REVOKED_CLOSE_CODE`) and sent nothing more of it; the
   features' own streams of the space hear it too (`LiveHub.on_revoke`: the
   jobs' event streams);
6. a user whose memberships changed (`LiveHub.spaces_changed`) is sent
   ``{"type": "spaces"}`` on their private space's sockets, so a replica
   following all its spaces re-reads them;
7. a commit made by another server process on the same database
   (`quietsync.server.postgres_listen`) reaches this hub as a wake-up, not as
   rows: `LiveHub.poke` (space, head seq) marks each subscription that has
   not sent that seq, and its session catches up from the store as in (3).

On shutdown `LiveHub.close_all` closes every socket with code 1001.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
from aiohttp import WSCloseCode, web

from quietsync.protocol import (
    REVOKED_CLOSE_CODE,
    Change,
    WireChanges,
    WireHello,
    WirePull,
    WireSpacesChanged,
    encode,
    private_space,
)
from quietsync.server.store import ChangePage

__all__ = [
    "MUST_PULL_CLOSE_CODE",
    "ChangeReader",
    "LiveHub",
    "LiveSession",
    "Published",
    "Subscription",
]

MUST_PULL_CLOSE_CODE = 4000

log = logging.getLogger(__name__)


@attrs.frozen
class Published:
    """One commit's changes, numbered from ``after + 1``, and about how many bytes they hold."""

    after: int
    changes: list[Change]
    size: int


class Subscription:
    """One socket's queue of published batches, bounded by `limit` changes and `max_bytes`.

    Besides batches it carries three flags set from outside the socket's task:
    `revoked` (its user lost the space: the session stops), a pending "spaces
    changed" notice (`take_notice`) and a pending "the store holds more"
    wake-up (`take_poke`). `sent` is the last cursor its session sent, so a
    wake-up for what it already sent (its own process's commit) is dropped.
    """

    def __init__(
        self, user: str, space: str, ws: web.WebSocketResponse, limit: int, max_bytes: int
    ) -> None:
        self.user = user
        self.space = space
        self.ws = ws
        self._limit = limit
        self._max_bytes = max_bytes
        self._items: collections.deque[Published] = collections.deque()
        self._count = 0
        self._bytes = 0
        self._wake = asyncio.Event()
        self._notice = False
        self._poked = False
        self.sent = 0
        self.overflowed = False
        self.revoked = False

    def offer(self, batch: Published) -> None:
        """Queue `batch`; past a limit, drop everything and mark the subscriber behind."""
        if self.overflowed:
            return
        self._count += len(batch.changes)
        self._bytes += batch.size
        if self._count > self._limit or self._bytes > self._max_bytes:
            self.overflowed = True
            self._items.clear()
        else:
            self._items.append(batch)
        self._wake.set()

    def revoke(self) -> None:
        """Stop the socket: its user may no longer read its space (nothing more is queued)."""
        self.revoked = True
        self._items.clear()
        self._wake.set()

    def notice_spaces(self) -> None:
        """Tell the socket's client its memberships changed (sent with the next wake-up)."""
        self._notice = True
        self._wake.set()

    def take_notice(self) -> bool:
        """True once per `notice_spaces` (the session sends the notice)."""
        notice, self._notice = self._notice, False
        return notice

    def poke(self, seq: int | None) -> None:
        """Wake the session to read the store: another process committed `seq` in this
        space (None: something may have been missed, read whatever is there)."""
        if seq is None or seq > self.sent:
            self._poked = True
            self._wake.set()

    def take_poke(self) -> bool:
        """True once per effective `poke` (the session catches up from the store)."""
        poked, self._poked = self._poked, False
        return poked

    async def next_batches(self) -> list[Published] | None:
        """The batches queued since the last call (waiting for a wake-up); None once
        overflowed or revoked."""
        await self._wake.wait()
        self._wake.clear()
        if self.overflowed or self.revoked:
            return None
        batches = list(self._items)
        self._items.clear()
        self._count = self._bytes = 0
        return batches


class LiveHub:
    """Every open live socket, by space."""

    def __init__(self, queue_limit: int, queue_max_bytes: int) -> None:
        self._queue_limit = queue_limit
        self._queue_max_bytes = queue_max_bytes
        self._subs: dict[str, set[Subscription]] = collections.defaultdict(set)
        self._revoke_listeners: list[Callable[[str, str], None]] = []

    def subscribe(self, user: str, space: str, ws: web.WebSocketResponse) -> Subscription:
        sub = Subscription(user, space, ws, self._queue_limit, self._queue_max_bytes)
        self._subs[space].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.space)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.space]

    def listening(self, space: str) -> bool:
        """True while `space` has a live socket (so publishing to it reaches somebody)."""
        return space in self._subs

    def publish(self, space: str, batch: Published) -> None:
        """Hand one committed batch to every socket of `space`."""
        if batch.changes:
            for sub in self._subs.get(space, ()):
                sub.offer(batch)

    def poke(self, space: str, seq: int) -> None:
        """Another process committed `space` up to `seq`: the sockets of `space` that have
        not sent it read the rows from the store."""
        for sub in self._subs.get(space, ()):
            sub.poke(seq)

    def poke_all(self) -> None:
        """Every socket reads the store once: commits of other processes may have gone
        unheard (the notification connection was lost meanwhile)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.poke(None)

    def revoke(self, user: str, space: str) -> None:
        """Stop every socket of `user` on `space` (they lost read access to it), and tell
        the listeners (`on_revoke`)."""
        for sub in [s for s in self._subs.get(space, ()) if s.user == user]:
            sub.revoke()
        for listener in self._revoke_listeners:
            listener(user, space)

    def on_revoke(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(user, space)`` on every `revoke`: a feature's streams of a space
        (a job's events) end like its sockets."""
        self._revoke_listeners.append(listener)

    def spaces_changed(self, user: str) -> None:
        """Send ``{"type": "spaces"}`` on `user`'s private space's sockets."""
        for sub in self._subs.get(private_space(user), ()):
            sub.notice_spaces()

    async def close_all(self) -> None:
        """Close every socket cleanly (1001, going away): the server is shutting down."""
        socks = [sub.ws for subs in self._subs.values() for sub in subs]
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in socks),
            return_exceptions=True,
        )


ReadCursor = Callable[[], Awaitable[int]]
ReadPage = Callable[[int], Awaitable[ChangePage]]


class ChangeReader(Protocol):
    """Reads pages of changes on the event loop, for the sockets (PostgreSQL:
    `quietsync.server.postgres_listen.LiveListener`); without one, or when it answers
    None (it cannot read now), they read on the store thread."""

    async def read_changes(
        self, space: str, since: int, limit: int, max_bytes: int
    ) -> ChangePage | None: ...


class LiveSession:
    """Sends one socket its hello, its backlog and its live changes (module docstring)."""

    def __init__(
        self, sub: Subscription, history: str, read_cursor: ReadCursor, read_page: ReadPage
    ) -> None:
        self._sub = sub
        self._ws = sub.ws
        self._history = history
        self._read_cursor = read_cursor
        self._read_page = read_page

    async def serve(self, since: int | None) -> None:
        """Serve the socket until the client leaves, falls behind, or the server stops."""
        sender = asyncio.create_task(self._send_all(since))
        reader = asyncio.create_task(self._read_all())
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and not self._ws.closed:
                exc = sender.exception()
                if exc is None and self._sub.revoked:
                    await self._ws.close(code=REVOKED_CLOSE_CODE, message=b"revoked")
                elif exc is None:  # the client fell behind and was told to pull
                    await self._ws.close(code=MUST_PULL_CLOSE_CODE, message=b"must pull")
                elif not isinstance(exc, ConnectionError):  # a vanished client is routine
                    log.error("live socket failed", exc_info=exc)
                    await self._ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"error")
        finally:
            sender.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)

    async def _read_all(self) -> None:
        async for _ in self._ws:
            pass  # clients send nothing we act on; reading keeps close frames flowing

    async def _send_all(self, since: int | None) -> None:
        """Hello, backlog, then live batches; returns on revocation, or (after telling the
        client) on overflow."""
        cursor = await self._read_cursor()
        await self._ws.send_str(encode(WireHello(cursor, self._history)).decode())
        self._sub.sent = cursor if since is None else since
        if since is not None:  # the backlog asked for. Without one there is none to read:
            # the subscription (made first) queues every commit after the cursor, each as its
            # own batch; a store read here, racing those commits, would merge their states
            await self._catch_up()
        while (batches := await self._sub.next_batches()) is not None:
            if self._sub.take_notice():
                await self._ws.send_str(encode(WireSpacesChanged()).decode())
            for batch in batches:
                fresh = [c for c in batch.changes if c.seq is not None and c.seq > self._sub.sent]
                if not fresh:
                    continue
                if batch.after > self._sub.sent:  # it overtook another batch: fill the gap first
                    await self._catch_up()
                    fresh = [c for c in fresh if c.seq is not None and c.seq > self._sub.sent]
                if fresh:
                    await self._send(self._sub.sent, fresh, fresh[-1].seq)
            if self._sub.take_poke():  # another process committed: its rows are in the store
                await self._catch_up()
        if not self._sub.revoked:
            await self._ws.send_str(encode(WirePull(self._sub.sent)).decode())

    async def _catch_up(self) -> None:
        """Send what the store holds after the last cursor sent (until revoked)."""
        while not self._sub.revoked:
            page = await self._read_page(self._sub.sent)
            if page.changes:
                await self._send(self._sub.sent, page.changes, page.cursor)
            if not page.has_more:
                return

    async def _send(self, after: int, changes: list[Change], cursor: int | None) -> None:
        assert cursor is not None
        if self._sub.revoked:  # revoked while this was read: not one change more
            return
        message = WireChanges([c.to_wire() for c in changes], cursor, after)
        await self._ws.send_str(encode(message).decode())
        self._sub.sent = cursor
