"""`LiveListener`: live changes of the other server processes on one PostgreSQL database.

Each commit that advances a space's head notifies
`quietsync.server.postgres_store.LIVE_CHANNEL` with ``'<space> <head>'``
(in its transaction, so at commit). Every server process on PostgreSQL keeps
one dedicated connection LISTENing there, on the aiohttp event loop (not the
store thread: a notification must not wait behind a push, and the store's
connection is busy in transactions). A notification becomes
`LiveHub.poke(space, head)`: the sockets of that space that have not sent
that head read the rows from the store, as for a batch that overtook another
(`quietsync.server.live`). The payload is a wake-up and never rows, so it
stays small whatever the commit's size, and the sockets' order and paging
stay the store's. This process's own commits come back too; their sockets
have usually sent them already, and otherwise only read the store once more.

Membership changes travel the same way on
`quietsync.server.spaces.postgres_store.MEMBERS_CHANNEL` (JSON ``{"space",
"user", "removed"}``): every process closes a removed member's sockets on the
space (`LiveHub.revoke`, code 4003) and tells the user's private sockets
(`LiveHub.spaces_changed`), so a removal made through one process revokes
the sockets of all of them. The process that made the change has done both
already; doing them again only sends one more ``{"type": "spaces"}``.

A lost connection is opened again, with backoff, and then every socket reads
the store once (`LiveHub.poke_all`): what other processes committed meanwhile
was never heard. A connection that went silent without being closed (a
network partition) is found by a ping every `PING_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import asyncpg

from quietsync.server.live import LiveHub
from quietsync.server.postgres_connection import DB_ERRORS, Backoff, translated_errors
from quietsync.server.postgres_store import LIVE_CHANNEL
from quietsync.server.spaces.postgres_store import MEMBERS_CHANNEL

__all__ = ["APPLICATION_NAME", "PING_EVERY", "LiveListener"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "quietsync-listen"
"""How the LISTEN connection shows in ``pg_stat_activity``."""
PING_EVERY = 15.0


class LiveListener:
    """One LISTEN connection to `url`, poking `hub` on each notification (module docstring)."""

    def __init__(self, url: str, hub: LiveHub) -> None:
        self._url = url
        self._hub = hub
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """LISTEN now (so a server that answers hears every commit from then on), then
        keep listening in a task; a database that does not answer fails the start."""
        with translated_errors("listen for live changes"):
            db = await self._connect()
        self._task = asyncio.create_task(self._keep(db), name="quietsync-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _connect(self) -> asyncpg.Connection:
        db: asyncpg.Connection = await asyncpg.connect(
            self._url, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            await db.add_listener(LIVE_CHANNEL, self._on_notify)
            await db.add_listener(MEMBERS_CHANNEL, self._on_members)
        except BaseException:
            db.terminate()
            raise
        return db

    def _on_notify(self, _db: object, _pid: int, _channel: str, payload: str) -> None:
        space, _, head = payload.rpartition(" ")
        try:
            self._hub.poke(space, int(head))
        except ValueError:  # not one of ours: somebody else NOTIFYing on the channel
            log.warning("ignored a notification on %s: %r", LIVE_CHANNEL, payload)

    def _on_members(self, _db: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = json.loads(payload)
            space, user, removed = change["space"], change["user"], change["removed"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a notification on %s: %r", MEMBERS_CHANNEL, payload)
            return
        if removed:
            self._hub.revoke(user, space)
        self._hub.spaces_changed(user)

    async def _keep(self, db: asyncpg.Connection) -> None:
        """Listen on `db` until it is lost, then on a new connection, forever."""
        while True:
            try:
                await self._until_lost(db)
            finally:
                db.terminate()
            log.warning("lost the %s connection; listening again", LIVE_CHANNEL)
            db = await self._reconnect()
            self._hub.poke_all()

    async def _until_lost(self, db: asyncpg.Connection) -> None:
        """Return once `db` is closed, or fails to answer a ping."""
        lost = asyncio.Event()
        db.add_termination_listener(lambda _db: lost.set())
        while True:
            try:
                await asyncio.wait_for(lost.wait(), PING_EVERY)
                return
            except TimeoutError:
                try:
                    await db.execute("SELECT 1", timeout=PING_EVERY)
                except DB_ERRORS:
                    return

    async def _reconnect(self) -> asyncpg.Connection:
        backoff = Backoff()
        while True:
            try:
                return await self._connect()
            except DB_ERRORS as exc:
                delay = backoff.failed()
                log.warning("cannot LISTEN on %s (%s); again in %.1f s", LIVE_CHANNEL, exc, delay)
            await asyncio.sleep(delay)
