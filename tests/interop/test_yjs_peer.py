"""A real JavaScript Yjs peer (Node.js, npm's `yjs`) against a real server, beside Python replicas.

The peer (``yjs_peer.mjs``) follows ``docs/protocol.md`` only: HLC stamps,
``<client>:<n>`` mutation ids, push, paged pull, the live socket, the
initial-content recipe and code-point -> UTF-16 positions. Text holds
accents, emoji, astral letters, a combining mark and CJK, so UTF-16 units,
code points and UTF-8 bytes (what pycrdt counts) all differ.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from quietsync import Replica, SyncClient
from quietsync.conflicts import FieldRef, initial_client_id, initial_text_update, text_of
from quietsync.testing import RunningServer, running_server
from tests.interop.node_peer import JsPeer, NodeEnv, js_peer

TOKEN = "token-a"
WAIT = 10.0  # seconds any wait for a condition may take
COLL, KEY = "notes", "n1"
BODY = [COLL, KEY, "body"]
TITLE = [COLL, KEY, "title"]
FA = "\U0001d504"  # MATHEMATICAL FRAKTUR CAPITAL A: astral, like the emoji (2 UTF-16 units)
FT = "\U0001d517"  # MATHEMATICAL FRAKTUR CAPITAL T
# code points:  G0 r1 ü2 ß3 e4 _5 😀6 _7 FA8 _9 n10 ◌̈11 _12 漢13 字14 _15 o16 k17
BASE = f"Grüße 😀 {FA} n\u0308 漢字 ok"

Peers = tuple[SyncClient, ...]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path / "server.db", users={"alice": TOKEN}) as srv:
        yield srv


@pytest.fixture
async def js(node_env: NodeEnv, server: RunningServer) -> AsyncIterator[JsPeer]:
    async with js_peer(node_env, server.url, server.token("alice"), "js1") as peer:
        yield peer


@pytest.fixture
async def python_peer(
    server: RunningServer, tmp_path: Path
) -> AsyncIterator[Callable[[str], SyncClient]]:
    """Opens a replica ``<name>.db`` (node id `name`) with its SyncClient; closes both after."""
    clients: list[SyncClient] = []

    def open_(name: str) -> SyncClient:
        replica = Replica.open(tmp_path / f"{name}.db", node_id=name)
        clients.append(SyncClient(replica, server.url, token=server.token("alice")))
        return clients[-1]

    yield open_
    for client in clients:
        await client.stop()
        client.replica.close()


def py_text(client: SyncClient, field: list[str]) -> str | None:
    record = client.replica.get(field[0], field[1])
    return None if record is None else record.get(field[2])


async def js_text(js: JsPeer, field: list[str]) -> str:
    return (await js.call("text", field=field))["text"]


async def settle(js: JsPeer, clients: Peers, *, limit: int = 500) -> list[dict[str, Any]]:
    """JS pushes and pulls, each Python replica syncs, until a round moves nothing.

    Returns the JS pull answers (to check its paging).
    """
    pulls = []
    for _ in range(6):
        pushed = await js.call("push")
        assert pushed["status"] in (None, 200), pushed
        pulls.append(await js.call("pull", limit=limit))
        moved = pushed["pushed"] + pulls[-1]["changes"]
        for client in clients:
            summary = await client.sync_once()
            assert summary.refused == 0, summary
            moved += summary.pushed + summary.pulled
        if moved == 0:
            return pulls
    raise AssertionError("still moving after 6 rounds of sync")


async def server_state(server: RunningServer) -> tuple[dict[str, str], int]:
    """Every crdt field's text as the server holds it (by field name), and the head cursor."""
    async with server.client("alice") as http:
        body = await (await http.get("/v1/pull", params={"limit": "5000"})).json()
    assert not body["has_more"]
    texts = {
        c["field"]: text_of(base64.b64decode(c["update"]))
        for c in body["changes"]
        if c["kind"] == "crdt"
    }
    return texts, body["cursor"]


def merged(base: str, inserts: dict[int, str], deleted: set[int]) -> str:
    """`base` with `inserts` (base position -> text, put before that character) and without
    the `deleted` positions: what concurrent edits at distinct positions merge to."""
    out = []
    for i in range(len(base) + 1):
        out.append(inserts.get(i, ""))
        if i < len(base) and i not in deleted:
            out.append(base[i])
    return "".join(out)


# Each peer's offline edits, at positions of BASE (descending, so each is still a BASE
# position when made); insert positions are distinct across peers, so the merge is exact.
JS_INSERTS = {16: "[js:🎈é]", 9: "[js:😀👍🏽]"}
JS_DELETED = {13}  # 漢
P1_INSERTS = {18: "[p1:ñ🎉]", 7: "[p1:字]"}
P1_DELETED = {0}  # G
P2_INSERTS = {12: "[p2:n\u0308]", 2: f"[p2:{FA}]"}
P2_DELETED = {3}  # ß


async def test_concurrent_offline_edits_converge(
    js: JsPeer, python_peer: Callable[[str], SyncClient], server: RunningServer
) -> None:
    py1, py2 = python_peer("py1"), python_peer("py2")

    # Everyone creates the field with the same content (one copy after the merge)...
    await js.call("init", field=BODY, content=BASE)
    for py in (py1, py2):
        py.replica.text_insert(COLL, KEY, "body", 0, BASE)
    py1.replica.text_insert(COLL, KEY, "title", 0, f"Titre 🎉 {FT}")

    # ...then edits it offline, in its own units: JS converts code points to UTF-16.
    at16 = await js.call("insert", field=BODY, index=16, text=JS_INSERTS[16])
    cut = await js.call("delete", field=BODY, index=13, length=1)
    at9 = await js.call("insert", field=BODY, index=9, text=JS_INSERTS[9])
    assert (at16["yjs_index"], cut["yjs_index"], at9["yjs_index"]) == (18, 15, 11)  # 😀, FA: 2 each
    py1.replica.text_insert(COLL, KEY, "body", 18, P1_INSERTS[18])
    py1.replica.text_insert(COLL, KEY, "body", 7, P1_INSERTS[7])
    py1.replica.text_delete(COLL, KEY, "body", 0, 1)
    py2.replica.text_insert(COLL, KEY, "body", 12, P2_INSERTS[12])
    py2.replica.text_delete(COLL, KEY, "body", 3, 1)
    py2.replica.text_insert(COLL, KEY, "body", 2, P2_INSERTS[2])

    mine = await js.call("text", field=BODY)
    assert mine["text"] == merged(BASE, JS_INSERTS, JS_DELETED)
    assert mine["utf16_length"] == len(mine["text"].encode("utf-16-le")) // 2
    assert py_text(py1, BODY) == merged(BASE, P1_INSERTS, P1_DELETED)
    assert py_text(py2, BODY) == merged(BASE, P2_INSERTS, P2_DELETED)

    pulls = await settle(js, (py1, py2), limit=1)  # limit 1: the JS peer pages
    assert max(p["pages"] for p in pulls) >= 2

    expected = merged(
        BASE, JS_INSERTS | P1_INSERTS | P2_INSERTS, JS_DELETED | P1_DELETED | P2_DELETED
    )
    assert await js_text(js, BODY) == expected
    assert py_text(py1, BODY) == expected
    assert py_text(py2, BODY) == expected
    for piece in [*JS_INSERTS.values(), *P1_INSERTS.values(), *P2_INSERTS.values()]:
        assert expected.count(piece) == 1
    assert expected.count("ok") == expected.count("r[p2") == 1  # the base once, not per peer
    texts, _ = await server_state(server)
    assert texts == {"body": expected, "title": f"Titre 🎉 {FT}"}
    assert await js_text(js, TITLE) == f"Titre 🎉 {FT}"
    assert py_text(py2, TITLE) == f"Titre 🎉 {FT}"
    assert (await js.call("state"))["refused"] == []


async def wait_py_text(client: SyncClient, field: list[str], expected: str) -> None:
    """Until the replica's field reads `expected` (change subscription, no polling)."""
    changed = asyncio.Event()
    unsubscribe = client.replica.subscribe(field[0], lambda _e: changed.set(), key=field[1])
    try:
        async with asyncio.timeout(WAIT):
            while py_text(client, field) != expected:
                await changed.wait()
                changed.clear()
    except TimeoutError:
        raise AssertionError(f"{py_text(client, field)!r} never became {expected!r}") from None
    finally:
        unsubscribe()


async def test_live_socket_delivers_python_edits_to_js(
    js: JsPeer, python_peer: Callable[[str], SyncClient]
) -> None:
    py1, py2 = python_peer("py1"), python_peer("py2")
    py1.replica.text_insert(COLL, KEY, "body", 0, "live 😀:")
    await py1.sync_once()
    assert (await js.call("pull"))["changes"] == 1
    assert await js_text(js, BODY) == "live 😀:"

    hello = await js.call("follow")
    assert hello["type"] == "hello"
    before = await js.call("state")
    assert hello["cursor"] == before["cursor"]

    # Python -> JS over /v1/live: the JS peer does not pull.
    py1.replica.text_insert(COLL, KEY, "body", 7, f" {FA}n\u0308 漢")
    await py1.sync_once()
    expected = f"live 😀: {FA}n\u0308 漢"
    assert py_text(py1, BODY) == expected
    seen = await js.call("wait", field=BODY, equals=expected, timeout_ms=int(WAIT * 1000))
    assert seen["pulls"] == before["pulls"]
    assert seen["live_changes"] >= 1

    # JS -> Python: a live Python replica gets the JS edit (and py1's) by itself.
    await py2.start()
    at = await js.call("insert", field=BODY, index=5, text="é👍🏽")  # before 😀
    assert at["yjs_index"] == 5
    at = await js.call("insert", field=BODY, index=10, text="[js]")  # after "é👍🏽😀:"
    assert at["yjs_index"] == 13
    assert (await js.call("push"))["status"] == 200
    expected = f"live é👍🏽😀:[js] {FA}n\u0308 漢"
    assert await js_text(js, BODY) == expected
    await wait_py_text(py2, BODY, expected)
    await py1.sync_once()
    assert py_text(py1, BODY) == expected
    # the JS peer's own write came back on the socket, harmlessly
    again = await js.call("wait", field=BODY, equals=expected)
    assert again["pulls"] == before["pulls"]


async def test_initial_content_recipe_makes_one_copy(
    js: JsPeer, python_peer: Callable[[str], SyncClient], server: RunningServer
) -> None:
    content = BASE
    ref = FieldRef(COLL, KEY, "body")
    init = await js.call("init", field=BODY, content=content)
    assert base64.b64decode(init["update"]) == initial_text_update(ref, content)
    assert init["client_id"] != initial_client_id(ref, content)  # edits use its own id

    py1 = python_peer("py1")
    py1.replica.text_insert(COLL, KEY, "body", 0, content)  # the same content, offline
    await settle(js, (py1,))
    assert await js_text(js, BODY) == content
    assert py_text(py1, BODY) == content
    assert (await server_state(server))[0] == {"body": content}

    # Both go on editing the one copy.
    await js.call("insert", field=BODY, index=len(content), text=f" ✓{FA}")
    py1.replica.text_insert(COLL, KEY, "body", 0, "» ")
    await settle(js, (py1,))
    expected = f"» {content} ✓{FA}"
    assert await js_text(js, BODY) == expected
    assert py_text(py1, BODY) == expected
    assert (await server_state(server))[0] == {"body": expected}


async def test_v2_update_is_refused(js: JsPeer, server: RunningServer) -> None:
    await js.call("init", field=BODY, content="v1 only 😀")
    first = await js.call("push")
    assert first["status"] == 200, first
    assert [r["outcome"] for r in first["body"]["results"]] == ["applied"]
    await js.call("insert", field=BODY, index=9, text=f" {FA} more")  # queued as js1:2
    before = await server_state(server)

    answer = await js.call("push_v2", field=BODY)  # the whole doc, v2-encoded, as js1:3
    assert answer["status"] == 422, answer
    assert answer["body"]["error"]["code"] == "mutations_refused"
    [item] = answer["body"]["refused"]
    assert (item["index"], item["id"], item["code"]) == (
        0,
        answer["mutation_id"],
        "bad_crdt_update",
    )
    assert await server_state(server) == before  # nothing written, not even a seq

    # Nothing was recorded for js1:3 either, so the earlier id js1:2 still applies.
    later = await js.call("push")
    assert later["status"] == 200, later
    assert later["body"]["results"] == [{"id": "js1:2", "outcome": "applied"}]
    assert (await server_state(server))[0] == {"body": f"v1 only 😀 {FA} more"}
