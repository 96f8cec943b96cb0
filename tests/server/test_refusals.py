"""Every refusal: its status, its error code and message, and that nothing changed.

Each test first pushes one good change, so "nothing changed" is checked
against a non-empty space: the following pull still shows exactly that one
change and no conflicts were recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from quietsync.conflicts import HLC, Clock
from quietsync.protocol import MAX_NESTING
from quietsync.testing import RunningServer
from tests.server.helpers import Writer, conflicts_of, pull_all, push

SMALL = {"max_body_bytes": 4096, "max_batch": 5}

YJS_V2_UPDATE = bytes.fromhex(
    "000003b9c00100000104141174657874636166c3a920f09f9880206f6b040a0101000001010000"
)
"""``Y.encodeStateAsUpdateV2`` of a doc whose text "text" holds "café 😀 ok" (yjs 13.6)."""


@pytest.fixture
async def before(alice: aiohttp.ClientSession, w1: Writer) -> list[dict[str, Any]]:
    """One change already in alice's space; returns the pull that shows it."""
    status, _ = await push(alice, [w1.lww("k", "title", "kept")])
    assert status == 200
    return await pull_all(alice)


async def assert_unchanged(http: aiohttp.ClientSession, before: list[dict[str, Any]]) -> None:
    assert await pull_all(http) == before
    assert await conflicts_of(http) == []


async def post_raw(
    http: aiohttp.ClientSession, data: bytes, **headers: str
) -> tuple[int, dict[str, Any]]:
    async with http.post("/v1/push", data=data, headers=headers) as resp:
        return resp.status, await resp.json()


def error(code: str, fragment: str, body: dict[str, Any]) -> None:
    assert body["error"]["code"] == code, body
    assert fragment in body["error"]["message"], body


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"mutations": [', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"mutations": [{"value": NaN}]}', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"mutations": [{"id": "\\ud800", "value": NaN}]}', "not valid JSON"),
        (b'{"mutations": [{"id": "\xed\xa0\x80"}]}', "not valid JSON"),  # not UTF-8
    ],
)
async def test_malformed_json(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], data: bytes, fragment: str
) -> None:
    status, body = await post_raw(alice, data, **{"Content-Type": "application/json"})
    assert status == 400
    error("malformed_json", fragment, body)
    assert "refused" not in body
    await assert_unchanged(alice, before)


@pytest.mark.parametrize("payload", [[], {"mutations": {}}, {"mutation": []}, "x", None])
async def test_body_of_the_wrong_shape(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], payload: Any
) -> None:
    status, body = await post_raw(alice, json.dumps(payload).encode())
    assert status == 400
    error("bad_request", 'a push body must be a JSON object {"mutations": [...]}', body)
    await assert_unchanged(alice, before)


@pytest.mark.parametrize("quietsync_server_options", [SMALL])
async def test_body_over_the_limit(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    big = {"mutations": [w1.lww("k", "title", "x" * 5000)]}
    status, body = await post_raw(alice, json.dumps(big).encode())
    assert status == 413
    error("body_too_large", "over the 4096-byte limit", body)
    await assert_unchanged(alice, before)


@pytest.mark.parametrize("quietsync_server_options", [SMALL])
async def test_chunked_body_over_the_limit(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]]
) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    async with alice.post("/v1/push", data=chunks()) as resp:
        assert resp.status == 413
        error("body_too_large", "over the 4096-byte limit", await resp.json())
    await assert_unchanged(alice, before)


@pytest.mark.parametrize("quietsync_server_options", [SMALL])
async def test_more_mutations_than_the_limit(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    status, body = await push(alice, [w1.lww(f"k{i}", "f", i) for i in range(6)])
    assert status == 413
    error("batch_too_large", "6 mutations in one push; at most 5 allowed", body)
    await assert_unchanged(alice, before)


def _future_writer() -> Writer:
    return Writer("fast", wall=lambda: Clock("x").now().wall_ms + 3_600_000)


def _bad_mutations(w: Writer) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name -> (mutation, refusal code, message fragment)."""
    good = w.lww("k2", "f", 1)
    return {
        "missing field": (
            {k: v for k, v in good.items() if k != "stamp"},
            "invalid_mutation",
            "missing required field `stamp`",
        ),
        "wrong type": (
            {**good, "key": 7},
            "invalid_mutation",
            "Expected `str`, got `int` - at `key`",
        ),
        "not an object": ([1, 2], "invalid_mutation", "Expected `object`, got `array`"),
        "unknown kind": ({**good, "kind": "set"}, "invalid_mutation", "at `kind`"),
        "bad base64": (
            {**w.crdt("k2", "body", b"\x00"), "update": "%%%"},
            "invalid_mutation",
            "base64 encoded string - at `update`",
        ),
        "clock drift": (_future_writer().lww("k2", "f", 1), "clock_drift", "ms ahead"),
        "clock drift (base)": (
            w.lww("k2", "f", 1, base=_future_writer().clock.now()),
            "clock_drift",
            "ms ahead",
        ),
        "garbage crdt": (
            w.crdt("k2", "body", b"garbage!"),
            "bad_crdt_update",
            "not a Yjs v1 update",
        ),
        "0x00 and junk": (  # 0x00 opens a valid v1 update: the rest must be read too
            w.crdt("k2", "body", b"\x00junk " + "é".encode()),
            "bad_crdt_update",
            "not a Yjs v1 update",
        ),
        "empty update and junk": (
            w.crdt("k2", "body", b"\x00\x00" + "😀".encode()),
            "bad_crdt_update",
            "trailing bytes",
        ),
        "yjs v2 update": (  # pycrdt alone reads it as an empty v1 update
            w.crdt("k2", "body", YJS_V2_UPDATE),
            "bad_crdt_update",
            "not v2",
        ),
        "v1 update and junk": (
            w.crdt("k2", "body", base64.b64decode(w.text("k2", "body", "é")["update"]) + b"\x01"),
            "bad_crdt_update",
            "not a Yjs v1 update",
        ),
        "kind mismatch (stored)": (
            w.crdt("k", "title", base64.b64decode(w.text("k", "x", "t")["update"])),
            "kind_mismatch",
            "field 'title' is a lww field; a crdt write is not allowed",
        ),
        "tombstone not bool": (w.lww("k", "_deleted", 1), "invalid_mutation", "true or false"),
        "crdt tombstone": (
            w.crdt("k", "_deleted", base64.b64decode(w.text("k", "x", "t")["update"])),
            "kind_mismatch",
            "'_deleted' is a lww field",
        ),
    }


NAMES = list(_bad_mutations(Writer("probe")))


@pytest.mark.parametrize("name", NAMES)
async def test_a_bad_mutation_refuses_the_whole_batch(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer, name: str
) -> None:
    bad, code, fragment = _bad_mutations(w1)[name]
    batch = [w1.lww("k3", "f", "good"), bad, w1.lww("k", "title", "changed")]
    status, body = await push(alice, batch)
    assert status == 422
    error("mutations_refused", "1 of 3 mutations refused; nothing was applied", body)
    [refusal] = body["refused"]
    assert refusal["index"] == 1
    assert refusal["id"] == (bad.get("id") if isinstance(bad, dict) else None)
    assert refusal["code"] == code
    assert fragment in refusal["reason"]
    await assert_unchanged(alice, before)


async def test_kind_mismatch_within_one_batch(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    text = w1.text("new", "body", "hello")
    lww = w1.lww("new", "body", "plain")
    status, body = await push(alice, [text, lww])
    assert status == 422
    assert body["refused"] == [
        {
            "index": 1,
            "id": lww["id"],
            "code": "kind_mismatch",
            "reason": "field 'body' is a crdt field; a lww write is not allowed",
        }
    ]
    await assert_unchanged(alice, before)


async def test_every_bad_mutation_is_named(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    bad = _bad_mutations(w1)
    batch = [w1.lww("k3", "f", 0), bad["wrong type"][0], w1.lww("k4", "f", 0)]
    batch += [bad["clock drift"][0], bad["garbage crdt"][0]]
    status, body = await push(alice, batch)
    assert status == 422
    assert [(r["index"], r["code"]) for r in body["refused"]] == [
        (1, "invalid_mutation"),
        (3, "clock_drift"),
        (4, "bad_crdt_update"),
    ]
    error("mutations_refused", "3 of 5 mutations refused", body)
    await assert_unchanged(alice, before)


async def test_a_refused_batch_records_no_mutation_id(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    good = w1.lww("k3", "f", "good")
    status, _ = await push(alice, [good, _bad_mutations(w1)["garbage crdt"][0]])
    assert status == 422
    status, body = await push(alice, [good])  # the client set the bad one aside
    assert (status, body["results"]) == (200, [{"id": good["id"], "outcome": "applied"}])
    assert [c["value"] for c in await pull_all(alice)] == ["kept", "good"]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer nope"}, "unknown bearer token"),
        ({"Authorization": "Basic dG9rZW4tYQ=="}, "must be 'Bearer <token>'"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/push"), ("GET", "/v1/pull"), ("GET", "/v1/conflicts"), ("GET", "/v1/live")],
)
async def test_missing_or_invalid_token_is_401(
    server: RunningServer,
    alice: aiohttp.ClientSession,
    before: list[dict[str, Any]],
    w1: Writer,
    headers: dict[str, str],
    fragment: str,
    method: str,
    path: str,
) -> None:
    async with (
        aiohttp.ClientSession(base_url=server.url, headers=headers) as anon,
        anon.request(method, path, json={"mutations": [w1.lww("k", "title", "x")]}) as resp,
    ):
        assert resp.status == 401
        error("unauthorized", fragment, await resp.json())
    await assert_unchanged(alice, before)


BAD_PAGE = [{"since": "-1"}, {"since": "x"}, {"limit": "0"}, {"limit": "1.5"}, {"since": "\u0661"}]
BAD_QUERIES = [("/v1/pull", p) for p in BAD_PAGE] + [("/v1/conflicts", p) for p in BAD_PAGE]
BAD_QUERIES += [("/v1/live", {"since": "-1"}), ("/v1/live", {"since": "x"})]


@pytest.mark.parametrize(("path", "params"), BAD_QUERIES)
async def test_bad_query_parameters_are_400(
    alice: aiohttp.ClientSession, path: str, params: dict[str, str]
) -> None:
    async with alice.get(path, params=params) as resp:
        assert resp.status == 400
        body = await resp.json()
    name = next(iter(params))
    error("bad_request", f"query parameter {name!r} must be an integer", body)


async def test_live_without_a_websocket_upgrade_is_400(alice: aiohttp.ClientSession) -> None:
    async with alice.get("/v1/live") as resp:
        assert resp.status == 400
        error("bad_request", "WebSocket", await resp.json())


async def test_unknown_paths_and_methods_answer_json(alice: aiohttp.ClientSession) -> None:
    async with alice.get("/v1/nope") as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (404, "not_found")
    async with alice.get("/v1/push") as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (405, "method_not_allowed")


async def test_stamps_are_checked_against_the_server_clock_not_absorbed(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    ahead = _future_writer().lww("k", "title", "from the future")
    stamp = HLC.parse(ahead["stamp"])
    status, _ = await push(alice, [ahead])
    assert status == 422
    ok = w1.lww("k", "later", "x")
    status, _ = await push(alice, [ok])
    assert status == 200
    # the refused stamp did not drag the server clock ahead: a later change logs normally
    assert stamp > HLC.parse((await pull_all(alice))[-1]["stamp"])


def _nested(depth: int, leaf: Any = "é😀𝄞") -> Any:
    """A value `depth` levels deep, alternating lists and objects, with a Unicode leaf."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"ключ🔑": value}
    return value


async def test_a_value_at_the_nesting_limit_is_accepted(
    alice: aiohttp.ClientSession, w1: Writer
) -> None:
    status, _ = await push(alice, [w1.lww("deep", "f", _nested(MAX_NESTING))])
    assert status == 200
    assert [c["value"] for c in await pull_all(alice)] == [_nested(MAX_NESTING)]


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300])
async def test_a_value_nested_past_the_limit_is_an_invalid_mutation(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer, depth: int
) -> None:
    bad = w1.lww("k2", "f", _nested(depth))
    status, body = await push(alice, [w1.lww("k3", "f", "good"), bad])
    assert status == 422
    assert [(r["index"], r["id"], r["code"]) for r in body["refused"]] == [
        (1, bad["id"], "invalid_mutation")
    ]
    assert f"nested deeper than {MAX_NESTING} levels" in body["refused"][0]["reason"]
    await assert_unchanged(alice, before)


async def test_a_body_nested_too_deep_to_parse_is_400(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer
) -> None:
    """Past some hundreds of levels (where depends on the stack) the parser gives up."""
    good = json.dumps({"mutations": [w1.lww("k2", "f", "x")]}).encode()
    data = good.replace(b'"value": "x"', b'"value": ' + b"[" * 10_000 + b"]" * 10_000)
    status, body = await post_raw(alice, data)
    assert status == 400
    error("bad_request", f"nested deeper than {MAX_NESTING} levels", body)
    await assert_unchanged(alice, before)


HUGE = [str(2**63), str(2**70), "9" * 5000]
HUGE_QUERIES = [
    (path, {name: number})
    for path in ("/v1/pull", "/v1/conflicts")
    for name in ("since", "limit")
    for number in HUGE
] + [("/v1/live", {"since": number}) for number in HUGE]


@pytest.mark.parametrize(("path", "params"), HUGE_QUERIES)
async def test_integers_past_64_bits_are_400(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], path: str, params: dict[str, str]
) -> None:
    """A live socket is refused before the upgrade, as a pull would be."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}  # fmt: skip
    async with alice.get(path, params=params, headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    name = next(iter(params))
    error("bad_request", f"query parameter {name!r} must be an integer", body)
    assert "2**63" in body["error"]["message"]
    await assert_unchanged(alice, before)


@pytest.mark.parametrize("offset", [str(2**63), "9" * 5000])
@pytest.mark.parametrize("suffix", ["", "/events"])
async def test_a_job_offset_past_64_bits_is_refused(
    alice: aiohttp.ClientSession, offset: str, suffix: str
) -> None:
    ids = {"thread_id": "t1", "message_id": "m1", "input": "héllo 😀", "mode": "background"}
    async with alice.post("/v1/jobs", json=ids) as resp:
        assert resp.status == 202
        job_id = (await resp.json())["job_id"]
    async with alice.get(f"/v1/jobs/{job_id}{suffix}", params={"offset": offset}) as resp:
        assert resp.status == 422
        error("invalid_job_request", "is beyond the content's length", await resp.json())


async def _raw_get(server: RunningServer, path: str, header: bytes) -> tuple[int, dict[str, Any]]:
    """GET `path` with the raw header line `header` (bytes no HTTP client would send)."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
        writer.write(request + header + b"\r\n\r\n")
        head, _, body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")
    finally:
        writer.close()
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff",
        b"Authorization: Bearer token-\xff\xfe",
        b"Authorization: \xff",
    ],
)
@pytest.mark.parametrize(
    "path",
    ["/v1/pull", "/v1/conflicts", "/v1/live", "/v1/live?token=%ED%A0%80", "/v1/live?token=%FF"],
)
async def test_an_authorization_header_that_is_not_utf8_is_401(
    server: RunningServer, alice: aiohttp.ClientSession, before: list[dict[str, Any]],
    header: bytes, path: str,
) -> None:  # fmt: skip
    status, body = await _raw_get(server, path, header)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    await assert_unchanged(alice, before)


@pytest.mark.parametrize("member", ["id", "collection", "key", "field", "value"])
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\udc00\\u00e9"])
async def test_a_lone_surrogate_in_a_mutation_refuses_that_mutation(
    alice: aiohttp.ClientSession, before: list[dict[str, Any]], w1: Writer, member: str, escape: str
) -> None:
    """No store can hold it (it is not UTF-8): that write is refused and named, as any bad one."""
    good, bad = w1.lww("k2", "f", "é😀"), w1.lww("k3", "f3", "v3", collection="c3")
    bad_json = json.dumps(bad).replace(json.dumps(bad[member]), f'"{escape}"', 1)
    good_json = [json.dumps(w) for w in (good, w1.lww("k", "title", "changed"))]
    data = f'{{"mutations": [{good_json[0]}, {bad_json}, {good_json[1]}]}}'
    status, body = await post_raw(alice, data.encode())
    assert status == 422
    error("mutations_refused", "1 of 3 mutations refused; nothing was applied", body)
    [refusal] = body["refused"]
    named = None if member == "id" else bad["id"]  # no answer can carry the lone surrogate
    assert (refusal["index"], refusal["id"], refusal["code"]) == (1, named, "invalid_mutation")
    assert repr(member) in refusal["reason"]
    await assert_unchanged(alice, before)


async def test_a_retried_id_with_a_drifted_stamp_is_answered_from_its_mark_and_changes_nothing(
    alice: aiohttp.ClientSession, w1: Writer, before: list[dict[str, Any]]
) -> None:
    """The first push of ``w1:1`` (in `before`) is recorded; the same id again, now with a
    stamp an hour ahead, is not decided again, so it is neither refused nor observed by
    the server's clock (which used to fail after the commit: a 500)."""
    (first,) = before
    retried = {
        **w1.lww("k", "title", "changed, an hour ahead 🕐"),
        "id": first["id"],
        "stamp": str(_future_writer().clock.now()),
    }
    status, body = await push(alice, [retried])
    assert status == 200, body
    assert body["results"] == [{"id": first["id"], "outcome": "applied"}]
    await assert_unchanged(alice, before)
    status, body = await push(alice, [w1.lww("k", "title", "next, on time")])
    assert (status, body["results"][0]["outcome"]) == (200, "applied"), body
