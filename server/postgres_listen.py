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
stay the store's. This process's own commits come back too, and are
dropped (the notifying backend is the store's connection, `own_pid`): the
process hands them to its sockets itself (`LiveHub.publish`), and a socket
poked by one usually before that hand-over would read the store instead,
racing the writer's next commit (a field overwritten meanwhile would skip a
state it held, a job's flush say) and adding a read per socket per commit.

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

The same connection serves the sockets' reads (`read_changes`, one at a time:
`quietsync.server.postgres_changes`): on the event loop, so a socket woken by
a commit reads it at once instead of queueing on the store thread behind this
process's pushes, and without the hop to that thread. Notifications still
arrive while a read runs (asyncpg takes them between any messages). While
the connection is lost, or if a read on it fails, the socket reads on the
store thread as on SQLite (`read_changes` answers None): a lost LISTEN
connection slows the sockets down, never closes them.

That kept connection is `Listener`; `LiveListener` is the core's use of it,
and the jobs feature has its own (`quietsync.server.jobs.postgres_peers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import asyncpg

from quietsync.server.live import LiveHub
from quietsync.server.postgres_changes import read_changes
from quietsync.server.postgres_connection import DB_ERRORS, Backoff, translated_errors
from quietsync.server.postgres_store import LIVE_CHANNEL
from quietsync.server.spaces.postgres_store import MEMBERS_CHANNEL
from quietsync.server.store import ChangePage

__all__ = ["APPLICATION_NAME", "PING_EVERY", "Listener", "LiveListener"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "quietsync-listen"
"""How the LISTEN connection shows in ``pg_stat_activity``."""
PING_EVERY = 15.0


class Listener:
    """One dedicated connection to `url` that LISTENs, kept open (module docstring).

    A subclass says what to LISTEN to (`channels`), what else to do on each
    new connection before listening (`_prepare`), and what to do once a lost
    connection is replaced (`_heard_again`): its notifications meanwhile
    were never heard.
    """

    application_name = APPLICATION_NAME
    server_settings: dict[str, str] = {}
    """More settings of the connection's session, beside its ``application_name``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._task: asyncio.Task[None] | None = None
        self._db: asyncpg.Connection | None = None  # the connection now, while open
        self._busy = asyncio.Lock()  # one query at a time on it (pings, a subclass's reads)

    def channels(self) -> dict[str, Callable[[int, str], None]]:
        """Each channel to LISTEN on, with what to do with a notification: its handler
        gets the notifying backend's pid and the payload."""
        raise NotImplementedError

    async def _prepare(self, db: asyncpg.Connection) -> None:
        """Run on each new connection, before it LISTENs."""

    def _heard_again(self) -> None:
        """Run once a lost connection is replaced."""

    async def start(self) -> None:
        """LISTEN now (so a server that answers hears every commit from then on), then
        keep listening in a task; a database that does not answer fails the start."""
        with translated_errors(f"listen as {self.application_name}"):
            self._db = await self._connect()
        self._task = asyncio.create_task(self._keep(self._db), name=self.application_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _connect(self) -> asyncpg.Connection:
        db: asyncpg.Connection = await asyncpg.connect(
            self._url,
            server_settings={"application_name": self.application_name, **self.server_settings},
        )
        try:
            await self._prepare(db)
            for channel, handle in self.channels().items():
                await db.add_listener(channel, lambda _db, pid, _ch, text, h=handle: h(pid, text))
        except BaseException:
            db.terminate()
            raise
        return db

    async def _keep(self, db: asyncpg.Connection) -> None:
        """Listen on `db` until it is lost, then on a new connection, forever."""
        while True:
            try:
                await self._until_lost(db)
            finally:
                db.terminate()
            log.warning("lost the %s connection; listening again", self.application_name)
            db = self._db = await self._reconnect()
            self._heard_again()

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
                    async with self._busy:
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
                log.warning(
                    "cannot listen as %s (%s); again in %.1f s", self.application_name, exc, delay
                )
            await asyncio.sleep(delay)


class LiveListener(Listener):
    """LISTENs for live changes and membership changes, poking `hub`; reads pages for
    its sockets (module docstring). `own_pid` is the backend pid of this process's
    store connection (None while it has none)."""

    server_settings = {  # as the store's connection (`SyncConnection`): plans per call's values
        "plan_cache_mode": "force_custom_plan",
    }

    def __init__(self, url: str, hub: LiveHub, own_pid: Callable[[], int | None]) -> None:
        super().__init__(url)
        self._hub = hub
        self._own_pid = own_pid

    def channels(self) -> dict[str, Callable[[int, str], None]]:
        return {LIVE_CHANNEL: self._on_notify, MEMBERS_CHANNEL: self._on_members}

    def _heard_again(self) -> None:
        self._hub.poke_all()

    async def read_changes(
        self, space: str, since: int, limit: int, max_bytes: int
    ) -> ChangePage | None:
        """A page of `space`'s changes after `since`, read on this connection; None if it
        cannot now (lost, being replaced): the caller reads on the store thread."""
        db = self._db
        if db is None or db.is_closed():
            return None
        async with self._busy:
            try:
                return await read_changes(db, space, since, limit, max_bytes)
            except DB_ERRORS as exc:
                log.debug("reading changes on the %s connection failed: %s", LIVE_CHANNEL, exc)
                return None

    def _on_notify(self, pid: int, payload: str) -> None:
        if pid == self._own_pid():
            return  # this process's commit: published to its sockets already (docstring)
        space, _, head = payload.rpartition(" ")
        try:
            self._hub.poke(space, int(head))
        except ValueError:  # not one of ours: somebody else NOTIFYing on the channel
            log.warning("ignored a notification on %s: %r", LIVE_CHANNEL, payload)

    def _on_members(self, _pid: int, payload: str) -> None:
        try:
            change = json.loads(payload)
            space, user, removed = change["space"], change["user"], change["removed"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a notification on %s: %r", MEMBERS_CHANNEL, payload)
            return
        if removed:
            self._hub.revoke(user, space)
        self._hub.spaces_changed(user)
