"""The live WebSocket: each user's committed changes, pushed to their sockets as they commit.

One `LiveHub` per app. A push that commits publishes its numbered changes to
the hub, which hands them to every `Subscription` of that user. Each socket is
served by a `LiveSession`:

1. subscribe first (so nothing committed from now on can be missed), then read
   the user's cursor and send ``{"type": "hello", "cursor": N}``;
2. if the client gave ``?since=S`` with S < N, send the backlog S..N from the
   store, page by page, as ``{"type": "changes", "changes": [...], "cursor": C}``;
3. forward each published batch the same way, in seq order with no gaps: a
   change at or below the last one sent is skipped, and a gap (a batch that
   overtook another) is filled from the store first;
4. a subscription holding more than `limit` unsent changes (a client reading
   too slowly) is dropped: the client gets ``{"type": "pull", "cursor": C}``
   (C = the last change sent) and the socket is closed with code 4000, so the
   server never buffers without bound. The client pulls, then reconnects.

On shutdown `LiveHub.close_all` closes every socket with code 1001.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, web

from quietsync.protocol import Change
from quietsync.server.store import ChangePage

__all__ = ["MUST_PULL_CLOSE_CODE", "LiveHub", "LiveSession", "Subscription"]

MUST_PULL_CLOSE_CODE = 4000

log = logging.getLogger(__name__)


class Subscription:
    """One socket's queue of published changes, bounded by `limit` changes."""

    def __init__(self, user: str, ws: web.WebSocketResponse, limit: int) -> None:
        self.user = user
        self.ws = ws
        self._limit = limit
        self._items: collections.deque[Change] = collections.deque()
        self._wake = asyncio.Event()
        self.overflowed = False

    def offer(self, changes: list[Change]) -> None:
        """Queue `changes`; past the limit, drop everything and mark the subscriber behind."""
        if self.overflowed:
            return
        if len(self._items) + len(changes) > self._limit:
            self.overflowed = True
            self._items.clear()
        else:
            self._items.extend(changes)
        self._wake.set()

    async def next_batch(self) -> list[Change] | None:
        """The changes queued since the last call (waiting for some); None once overflowed."""
        await self._wake.wait()
        self._wake.clear()
        if self.overflowed:
            return None
        batch = list(self._items)
        self._items.clear()
        return batch


class LiveHub:
    """Every open live socket, by user."""

    def __init__(self, queue_limit: int) -> None:
        self._queue_limit = queue_limit
        self._subs: dict[str, set[Subscription]] = collections.defaultdict(set)

    def subscribe(self, user: str, ws: web.WebSocketResponse) -> Subscription:
        sub = Subscription(user, ws, self._queue_limit)
        self._subs[user].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.user)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.user]

    def listening(self, user: str) -> bool:
        """True while `user` has a live socket (so publishing to them reaches somebody)."""
        return user in self._subs

    def publish(self, user: str, changes: list[Change]) -> None:
        """Hand committed `changes` (in seq order) to every socket of `user`."""
        if changes:
            for sub in self._subs.get(user, ()):
                sub.offer(changes)

    async def close_all(self) -> None:
        """Close every socket cleanly (1001, going away): the server is shutting down."""
        socks = [sub.ws for subs in self._subs.values() for sub in subs]
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in socks),
            return_exceptions=True,
        )


ReadCursor = Callable[[], Awaitable[int]]
ReadPage = Callable[[int], Awaitable[ChangePage]]


class LiveSession:
    """Sends one socket its hello, its backlog and its live changes (module docstring)."""

    def __init__(self, sub: Subscription, read_cursor: ReadCursor, read_page: ReadPage) -> None:
        self._sub = sub
        self._ws = sub.ws
        self._read_cursor = read_cursor
        self._read_page = read_page
        self._last = 0

    async def serve(self, since: int | None) -> None:
        """Serve the socket until the client leaves, falls behind, or the server stops."""
        sender = asyncio.create_task(self._send_all(since))
        reader = asyncio.create_task(self._read_all())
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and not self._ws.closed:
                exc = sender.exception()
                if exc is None:  # the client fell behind and was told to pull
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
        """Hello, backlog, then live batches; returns (after telling the client) on overflow."""
        cursor = await self._read_cursor()
        await self._ws.send_json({"type": "hello", "cursor": cursor})
        self._last = cursor if since is None else since
        await self._catch_up()
        while (batch := await self._sub.next_batch()) is not None:
            fresh = [c for c in batch if c.seq is not None and c.seq > self._last]
            if fresh and fresh[0].seq != self._last + 1:
                await self._catch_up()
                fresh = [c for c in fresh if c.seq is not None and c.seq > self._last]
            if fresh:
                await self._send(fresh)
        await self._ws.send_json({"type": "pull", "cursor": self._last})

    async def _catch_up(self) -> None:
        """Send everything the store holds after the last change sent."""
        while True:
            page = await self._read_page(self._last)
            if page.changes:
                await self._send(page.changes)
            if not page.has_more:
                return

    async def _send(self, changes: list[Change]) -> None:
        cursor = changes[-1].seq
        assert cursor is not None
        await self._ws.send_json(
            {"type": "changes", "changes": [c.to_json() for c in changes], "cursor": cursor}
        )
        self._last = cursor
