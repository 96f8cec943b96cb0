"""`read_changes` on PostgreSQL: a page without a transaction, and live sockets reading on
the event loop, not behind the store thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg

from quietsync.protocol import private_space
from quietsync.server.keys import CORE_KEY
from quietsync.server.postgres_changes import read_changes
from quietsync.server.store import ChangePage
from quietsync.testing import running_server
from tests.server.helpers import Writer, push
from tests.server.test_live import TIMEOUT, hello, receive

SPACE = private_space("alice")


class Interleaved:
    """An asyncpg connection that runs `between` after the page's first statement, as if
    another process committed while the page was being read."""

    def __init__(self, db: asyncpg.Connection, between: Any) -> None:
        self._db, self._between = db, between

    async def fetchrow(self, *args: Any) -> Any:
        row = await self._db.fetchrow(*args)
        await self._between()
        return row

    async def fetch(self, *args: Any) -> Any:
        return await self._db.fetch(*args)


def keys(page: ChangePage) -> list[tuple[int | None, str]]:
    return [(c.seq, c.key) for c in page.changes]


async def test_a_field_overwritten_between_the_two_statements_is_on_the_next_page(
    pg_url: str,
) -> None:
    """k1..k3 at seqs 1..3; k2 is overwritten (seq 4) after the sizes were read: the page
    leaves it out, its cursor is the head first read, and the next page has k2 at 4."""
    w = Writer("n1")
    async with running_server(pg_url) as server, server.client("alice") as http:
        assert (await push(http, [w.lww(k, "v", 1) for k in ("k1", "k2", "k3")]))[0] == 200

        async def overwrite_k2() -> None:
            assert (await push(http, [w.lww("k2", "v", 2)]))[0] == 200

        db = await asyncpg.connect(pg_url)
        try:
            racing: Any = Interleaved(db, overwrite_k2)
            page = await read_changes(racing, SPACE, 0, 10, 1 << 20)
            assert (keys(page), page.cursor, page.has_more) == ([(1, "k1"), (3, "k3")], 3, False)
            after = await read_changes(db, SPACE, page.cursor, 10, 1 << 20)
            assert (keys(after), after.cursor, after.has_more) == ([(4, "k2")], 4, False)
        finally:
            await db.close()


async def test_a_page_whose_every_row_moved_still_advances_to_its_cut(pg_url: str) -> None:
    """A page of one (limit 1) whose one field is overwritten before its rows are read:
    empty, cursor at the cut, more to come; the field arrives later at its new seq."""
    w = Writer("n1")
    async with running_server(pg_url) as server, server.client("alice") as http:
        assert (await push(http, [w.lww(k, "v", 1) for k in ("k1", "k2")]))[0] == 200

        async def overwrite_k1() -> None:
            assert (await push(http, [w.lww("k1", "v", 2)]))[0] == 200

        db = await asyncpg.connect(pg_url)
        try:
            racing: Any = Interleaved(db, overwrite_k1)
            page = await read_changes(racing, SPACE, 0, 1, 1 << 20)
            assert (keys(page), page.cursor, page.has_more) == ([], 1, True)
            rest = await read_changes(db, SPACE, page.cursor, 10, 1 << 20)
            assert keys(rest) == [(2, "k2"), (3, "k1")] and rest.cursor == 3
        finally:
            await db.close()


async def test_a_socket_woken_by_another_process_reads_while_the_store_thread_is_busy(
    pg_url: str,
) -> None:
    """Server 1's store thread is held (as by a long push); a commit through server 2
    still reaches server 1's socket, whose read runs on the event loop."""
    w = Writer("n1")
    async with (
        running_server(pg_url) as first,
        running_server(pg_url) as second,
        first.client("alice") as on_first,
        second.client("alice") as on_second,
    ):
        ws = await on_first.ws_connect("/v1/live")
        assert hello(await receive(ws)) == 0
        held, release, done = threading.Event(), threading.Event(), threading.Event()

        def hold() -> None:  # longer than the socket waits (TIMEOUT), unless released
            held.set()
            release.wait(3 * TIMEOUT)
            done.set()

        busy = asyncio.get_running_loop().run_in_executor(first.app[CORE_KEY].executor, hold)
        try:
            await asyncio.get_running_loop().run_in_executor(None, held.wait, TIMEOUT)
            assert (await push(on_second, [w.lww("k", "v", 1)]))[0] == 200
            message = await receive(ws)
            assert message["type"] == "changes" and [c["key"] for c in message["changes"]] == ["k"]
            assert not done.is_set()  # the store thread was held all along
        finally:
            release.set()
            await busy
        await ws.close()


async def test_pulls_read_the_same_pages_through_the_store(pg_url: str) -> None:
    """The store's pulls go through `read_changes` too: pages cut by bytes, cursors chained."""
    w = Writer("n1")
    async with (
        running_server(pg_url, page_max_bytes=64) as server,
        server.client("alice") as http,
    ):
        assert (await push(http, [w.lww(f"k{i}", "v", "x" * 40) for i in range(5)]))[0] == 200
        seqs, since, pages = [], 0, 0
        while True:
            async with http.get("/v1/pull", params={"since": since}) as resp:
                body = await resp.json()
            seqs += [c["seq"] for c in body["changes"]]
            since, pages = body["cursor"], pages + 1
            if not body["has_more"]:
                break
    assert seqs == [1, 2, 3, 4, 5] and since == 5 and pages >= 3
