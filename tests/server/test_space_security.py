"""Security of spaces (issue #16, item 4), over a real server on loopback.

Every endpoint that names a space (push, pull, conflicts, live, and the
members GET, PUT and DELETE; the jobs endpoints are left out: they are being
reworked) is tried by each kind of caller who must be refused:

1. a non-member, and anybody naming a space id they guessed (random ``s:``
   ids, other users' ``u:`` ids, malformed, overlong, odd characters,
   percent-encodings, Unicode look-alikes): ``404 space_not_found``, the
   body byte-equal to the one for a space that exists, so an id reveals
   nothing;
2. a member below the role the endpoint needs (a reader pushing, a writer
   changing members): ``403 forbidden``;
3. a removed (or departed) member, with the cursor they had: 404 again, and
   a live socket open at the removal closes with 4003 and is sent nothing
   written after it;
4. a member of space A: what they write to A never shows in space B, even
   under the same collection/key/field and mutation id, and no pull, log or
   socket of A holds anything of B; nor can a member take over another
   member's mutation ids.

Every refusal is checked to change nothing (`State`: every space's full pull,
cursor, conflicts and members, every user's space list, the live hub's
subscriptions) and to show nothing (no record value, `SECRET`, in its body).
Last, a property: random membership operations by random actors get the
answers of a small model of the rules (`Model`), and a refused one changes
nothing: on SQLite (a new file per example) and on PostgreSQL (one database,
a new shared space per example).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quietsync.protocol import REVOKED_CLOSE_CODE, Role, role_allows
from quietsync.server.keys import HUB_KEY
from quietsync.server.spaces.service import new_space_id
from quietsync.testing import RunningServer, running_server
from tests.server.helpers import Writer, new_space, push, set_member

USERS = {"alice": "token-alice-0000", "bob": "token-bob-000000", "carol": "token-carol-00000"}
SECRET = "SECRET"
"""In every value the world holds: a refusal whose body holds it has leaked a record."""

ENDPOINTS = ("push", "pull", "conflicts", "live", "members", "put_member", "delete_member")
NEEDS: dict[str, Role] = {
    "push": "write",
    "pull": "read",
    "conflicts": "read",
    "live": "read",
    "members": "read",
    "put_member": "admin",
    "delete_member": "admin",  # removing somebody else; leaving needs only read
}
HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(b"sixteen byte key").decode(),
}
"""A real WebSocket handshake, sent as a plain request so a refusal's body can be read."""


@pytest.fixture
def quietsync_users() -> Mapping[str, str]:
    return USERS


@attrs.frozen
class Answer:
    status: int
    body: bytes

    def error(self) -> dict[str, str]:
        parsed = json.loads(self.body)
        assert list(parsed) == ["error"] and sorted(parsed["error"]) == ["code", "message"]
        return dict(parsed["error"])


@attrs.define
class World:
    """Space A (alice admin, bob write, carol read), space B (bob admin), private spaces;
    each holds records (all valued with `SECRET`) and a conflict."""

    server: RunningServer
    http: dict[str, aiohttp.ClientSession]
    a: str
    b: str
    writers: dict[str, Writer]
    bob_cursor_in_a: int

    @property
    def admins(self) -> dict[str, str]:
        """Each space of the world, with a user who may read all of it."""
        return {self.a: "alice", self.b: "bob", **{f"u:{u}": u for u in USERS}}

    async def attempt(
        self,
        user: str,
        endpoint: str,
        space: str,
        *,
        member: str = "carol",
        role: str = "admin",
        since: int | None = None,
        encoded: bool = False,
    ) -> Answer:
        """`user` calls `endpoint` naming `space` (`encoded`: already percent-encoded, as a
        guesser may send what no client library would)."""
        sp = space if encoded else quote(space, safe="")
        query = f"space={sp}" + ("" if since is None else f"&since={since}")
        kw: dict[str, Any] = {}
        method = "GET"
        if endpoint == "push":
            method, path = "POST", f"/v1/push?{query}"
            kw["json"] = {"mutations": [self.writers[user].lww("k", "title", "intruder")]}
        elif endpoint in ("pull", "conflicts"):
            path = f"/v1/{endpoint}?{query}"
        elif endpoint == "live":
            path, kw["headers"] = f"/v1/live?{query}", HANDSHAKE
        elif endpoint == "members":
            path = f"/v1/spaces/{sp}/members"
        else:
            path = f"/v1/spaces/{sp}/members/{quote(member, safe='')}"
            method = "PUT" if endpoint == "put_member" else "DELETE"
            if method == "PUT":
                kw["json"] = {"role": role}
        url = yarl.URL(self.server.url + path, encoded=True)
        async with self.http[user].request(method, url, **kw) as resp:
            return Answer(resp.status, await resp.read())

    async def state(self) -> State:
        """Everything a refusal must leave as it was."""
        spaces = {}
        for space, user in self.admins.items():
            http = self.http[user]
            changes, cursor = await pull_everything(http, space)
            async with http.get("/v1/conflicts", params={"space": space, "limit": 5000}) as r:
                conflicts = await r.json()
            async with http.get(f"/v1/spaces/{space}/members") as r:
                members = await r.json()
            spaces[space] = (changes, cursor, conflicts, members)
        lists = {}
        for user, http in self.http.items():
            async with http.get("/v1/spaces") as r:
                lists[user] = await r.json()
        hub = self.server.app[HUB_KEY]
        listening = {space: hub.listening(space) for space in self.admins}
        return State(spaces, lists, listening)


@attrs.frozen
class State:
    spaces: dict[str, Any]
    """space -> (every change, cursor, conflicts, members)"""
    lists: dict[str, Any]
    """user -> GET /v1/spaces"""
    listening: dict[str, bool]


async def pull_everything(
    http: aiohttp.ClientSession, space: str, since: int = 0
) -> tuple[list[dict[str, Any]], int]:
    changes: list[dict[str, Any]] = []
    while True:
        async with http.get("/v1/pull", params={"space": space, "since": since}) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        changes += page["changes"]
        since = page["cursor"]
        if not page["has_more"]:
            return changes, since


async def conflict_in(
    http: tuple[aiohttp.ClientSession, aiohttp.ClientSession], space: str, tag: str = "racer"
) -> None:
    """Two concurrent writes (neither saw the other) of different content: one conflict."""
    for n, session in enumerate(http):
        writer = Writer(f"{tag}{n}")
        status, body = await push(
            session, [writer.lww(f"{tag}-race", "title", f"{SECRET}-{n} in {space}")], space
        )
        assert status == 200, body


@pytest.fixture
async def world(server: RunningServer) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        http = {u: await stack.enter_async_context(server.client(u)) for u in USERS}
        writers = {u: Writer(f"{u}-node") for u in USERS}
        a, b = await new_space(http["alice"], "A"), await new_space(http["bob"], "B")
        assert (await set_member(http["alice"], a, "bob", "write"))[0] == 200
        assert (await set_member(http["alice"], a, "carol", "read"))[0] == 200
        for space, user in [(a, "alice"), (b, "bob"), *((f"u:{u}", u) for u in USERS)]:
            mutation = writers[user].lww("k", "title", f"{SECRET} of {space}")
            assert (await push(http[user], [mutation], space))[0] == 200
        await conflict_in((http["alice"], http["bob"]), a)
        await conflict_in((http["bob"], http["bob"]), b)
        _, cursor = await pull_everything(http["bob"], a)
        assert cursor > 0
        yield World(server, http, a, b, writers, cursor)


def guessed_ids(b: str) -> list[str]:
    """Percent-encoded ids alice might try in place of B (a space she is not in): none
    may answer otherwise than B does."""
    tail = b.removeprefix("s:")
    raw = [
        new_space_id(),
        new_space_id(),
        "s:" + "a" * 26,
        "s:" + tail.upper(),
        b[:-1],
        b + "a",
        " " + b,
        b + " ",
        b + "\n",
        b + "\x00",
        b + "/",
        "u:bob",
        "u:carol",
        "U:bob",
        "u:alice ",
        "u:",
        "u",
        "s:",
        ":",
        "null",
        "*",
        "%",
        "s:%",
        "' OR '1'='1",
        "s:' OR role='admin' --",
        "../" + b,
        "u:b\u043eb",  # a Cyrillic o
        "s\uff1a" + tail,  # a fullwidth colon
        "\uff53:" + tail,  # a fullwidth s
        b + "\u200b",  # a zero-width space
        "🔑" * 10,
        "x" * 129,
        "s:" + "a" * 127,
        "s:" + "a" * 3000,
    ]
    return [quote(s, safe="") for s in raw] + [
        "s:" + "".join(f"%{ord(c):02X}" for c in tail),  # B itself, every letter escaped
        "s%253A" + tail,  # B, escaped twice
        "%FF",  # not UTF-8
        "%ED%A0%80",  # a lone surrogate
        "%C0%BA" + tail,  # an overlong ':'
        "%zz",
        "%",
        "u%3Abob",
        "%00",
        "s:" + tail + "%00",
    ]


def never_existing() -> str:
    return new_space_id()


def assert_not_found(answer: Answer, expected: Answer) -> None:
    assert (answer.status, answer.error()["code"]) == (404, "space_not_found")
    assert answer == expected  # byte-equal: existence never leaks
    assert SECRET.encode() not in answer.body


def assert_forbidden(answer: Answer, needed: Role) -> None:
    error = answer.error()
    assert (answer.status, error["code"]) == (403, "forbidden")
    assert repr(needed) in error["message"]
    assert SECRET not in error["message"] and not any(u in error["message"] for u in USERS)


# 1. Non-members and guessed ids ---------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_space_one_is_not_in_answers_byte_for_byte_as_one_that_does_not_exist(
    world: World, endpoint: str
) -> None:
    before = await world.state()
    member = "alice" if endpoint == "put_member" else "bob"  # join as admin; drop B's admin
    expected = await world.attempt("alice", endpoint, never_existing(), member=member)
    assert_not_found(expected, expected)
    assert_not_found(await world.attempt("alice", endpoint, world.b, member=member), expected)
    assert_not_found(await world.attempt("carol", endpoint, world.b, member=member), expected)
    assert_not_found(await world.attempt("carol", endpoint, world.b, member="carol"), expected)
    for guess in guessed_ids(world.b):
        answer = await world.attempt("alice", endpoint, guess, member=member, encoded=True)
        assert answer == expected, guess
    assert await world.state() == before


@pytest.mark.parametrize("endpoint", ["push", "pull", "conflicts", "live"])
async def test_naming_the_space_twice_acts_on_the_first_name_only(
    world: World, endpoint: str
) -> None:
    """``?space=B&space=A`` by a member of A only: B is checked, and B is refused."""
    before = await world.state()
    expected = await world.attempt("alice", endpoint, never_existing())
    twice = f"{quote(world.b, safe='')}&space={quote(world.a, safe='')}"
    assert_not_found(await world.attempt("alice", endpoint, twice, encoded=True), expected)
    assert await world.state() == before


# 2. Members below the role needed --------------------------------------------------------

ROLE_OF = {"alice": "admin", "bob": "write", "carol": "read"}  # in space A


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_each_role_may_do_what_it_allows_and_is_refused_the_rest_changing_nothing(
    world: World, endpoint: str
) -> None:
    for user in ("carol", "bob", "alice"):  # read, write, admin: refusals first
        role = ROLE_OF[user]
        before = await world.state()
        if endpoint == "live":  # every role reads
            async with world.http[user].ws_connect("/v1/live", params={"space": world.a}) as ws:
                assert json.loads(await ws.receive_str(timeout=5))["type"] == "hello"
            continue
        answer = await world.attempt(user, endpoint, world.a, member="dave", role="read")
        if role_allows(role, NEEDS[endpoint]):
            assert answer.status in (200, 204), (user, answer)
        else:
            assert_forbidden(answer, NEEDS[endpoint])
            assert await world.state() == before, user


@pytest.mark.parametrize(
    ("user", "endpoint", "member", "role"),
    [
        ("bob", "put_member", "bob", "admin"),  # a writer promoting themselves
        ("bob", "put_member", "alice", "read"),  # demoting the admin
        ("bob", "put_member", "carol", "write"),
        ("bob", "delete_member", "alice", ""),  # removing the admin
        ("bob", "delete_member", "carol", ""),
        ("carol", "put_member", "carol", "write"),  # a reader promoting themselves
        ("carol", "put_member", "bob", "read"),
        ("carol", "delete_member", "bob", ""),
        ("carol", "delete_member", "alice", ""),
        ("carol", "delete_member", "dave", ""),  # even a no-op needs admin
    ],
)
async def test_members_below_admin_cannot_change_members(
    world: World, user: str, endpoint: str, member: str, role: str
) -> None:
    before = await world.state()
    answer = await world.attempt(user, endpoint, world.a, member=member, role=role or "admin")
    assert_forbidden(answer, "admin")
    assert await world.state() == before


# 3. Removed members -----------------------------------------------------------------------


async def remove_bob(world: World, how: str) -> None:
    """Bob loses space A: alice removes him, or he leaves."""
    remover = "alice" if how == "removed" else "bob"
    async with world.http[remover].delete(f"/v1/spaces/{world.a}/members/bob") as resp:
        assert resp.status == 204


@pytest.mark.parametrize("how", ["removed", "left"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_removed_member_with_an_old_cursor_is_a_stranger(
    world: World, how: str, endpoint: str
) -> None:
    await remove_bob(world, how)
    before = await world.state()
    since = world.bob_cursor_in_a if endpoint in ("pull", "conflicts", "live") else None
    member = {"put_member": "bob", "delete_member": "alice"}.get(endpoint, "carol")
    expected = await world.attempt("bob", endpoint, never_existing(), member=member, since=since)
    for space_since in (since, 0, None):
        answer = await world.attempt("bob", endpoint, world.a, member=member, since=space_since)
        assert_not_found(answer, expected)
    assert await world.state() == before


async def receive_until_closed(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], int]:
    """Every message until the server closes the socket (waiting at most 5 s), and the
    close code it sent."""
    messages = []
    while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
        messages.append(json.loads(msg.data))
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return messages, int(msg.data)


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return dict(json.loads(await ws.receive_str(timeout=5)))


@pytest.mark.parametrize("how", ["removed", "left"])
async def test_a_socket_open_at_the_removal_closes_4003_and_is_sent_nothing_after_it(
    world: World, how: str
) -> None:
    bob, carol = world.http["bob"], world.http["carol"]
    params = {"space": world.a, "since": world.bob_cursor_in_a}
    async with (
        bob.ws_connect("/v1/live", params=params) as on_a,
        bob.ws_connect("/v1/live", params={"space": world.b}) as on_b,
        bob.ws_connect("/v1/live") as private,
        carol.ws_connect("/v1/live", params={"space": world.a}) as carols,
    ):
        for ws in (on_a, on_b, private, carols):
            assert (await next_message(ws))["type"] == "hello"
        await remove_bob(world, how)
        after = world.writers["alice"].lww("k", "title", f"{SECRET} written after the removal")
        assert (await push(world.http["alice"], [after], world.a))[0] == 200
        heard = await next_message(carols)  # a member still hears it
        assert [c["value"] for c in heard["changes"]] == [after["value"]]
        assert await receive_until_closed(on_a) == ([], REVOKED_CLOSE_CODE)
        assert await next_message(private) == {"type": "spaces"}
        mine = world.writers["bob"].lww("k", "title", "bob's own space goes on")
        assert (await push(bob, [mine], world.b))[0] == 200
        assert [c["value"] for c in (await next_message(on_b))["changes"]] == [mine["value"]]
    assert not world.server.app[HUB_KEY].listening(world.a)


async def test_sockets_opened_around_a_removal_never_see_what_follows(world: World) -> None:
    """Sockets opened before the removal, and sockets racing it: each is refused (404) or
    closed 4003, and none is sent anything written after the removal answered."""
    bob = world.http["bob"]

    async def follow(opened: asyncio.Event) -> list[dict[str, Any]]:
        params = {"space": world.a, "since": 0}
        try:
            async with bob.ws_connect("/v1/live", params=params) as ws:
                opened.set()
                messages, code = await receive_until_closed(ws)
                assert code == REVOKED_CLOSE_CODE
                return messages
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 404
            return []

    before = [asyncio.Event() for _ in range(4)]
    followers = [asyncio.create_task(follow(opened)) for opened in before]
    for opened in before:
        await asyncio.wait_for(opened.wait(), timeout=5)
    followers += [asyncio.create_task(follow(asyncio.Event())) for _ in range(4)]  # racing
    await remove_bob(world, "removed")
    after = world.writers["alice"].lww("k", "title", "after")
    assert (await push(world.http["alice"], [after], world.a))[0] == 200
    for messages in await asyncio.gather(*followers):
        assert "after" not in [c["value"] for m in messages for c in m.get("changes", [])]


# 4. One space's records never reach another ------------------------------------------------


async def test_the_same_record_in_two_spaces_stays_two_records(world: World) -> None:
    """bob writes A and B under the same collection/key/field, even the same mutation (id
    and stamp): each space holds its own, pulls, logs and sockets of A hold nothing of B."""
    bob, alice = world.http["bob"], world.http["alice"]
    b_before, b_cursor = await pull_everything(bob, world.b)
    async with alice.ws_connect("/v1/live", params={"space": world.a}) as on_a:
        assert (await next_message(on_a))["type"] == "hello"
        same = Writer("twin").lww("shared-key", "title", "one write, two spaces")
        to_b = await push(bob, [same], world.b)
        to_a = await push(bob, [same], world.a)
        assert to_a[1]["results"] == to_b[1]["results"] == [{"id": "twin:1", "outcome": "applied"}]
        only_b = world.writers["bob"].lww("shared-key", "body", "B's alone")
        assert (await push(bob, [only_b], world.b))[0] == 200
        in_a = world.writers["alice"].lww("shared-key", "body", "A's alone")
        assert (await push(alice, [in_a], world.a))[0] == 200
        first, second = await next_message(on_a), await next_message(on_a)
        assert [c["value"] for m in (first, second) for c in m["changes"]] == [
            same["value"],
            "A's alone",
        ]
    a_changes, _ = await pull_everything(alice, world.a)
    b_changes, _ = await pull_everything(bob, world.b, since=b_cursor)
    assert [c["value"] for c in b_changes] == [same["value"], "B's alone"]
    assert "B's alone" not in {c["value"] for c in a_changes}
    assert {c["value"] for c in a_changes} & {c["value"] for c in b_before} == set()
    assert [c["key"] for c in (await pull_everything(bob, "u:bob"))[0]] == ["k"]


async def test_a_conflict_in_one_space_is_logged_there_only(world: World) -> None:
    before = await world.state()
    await conflict_in((world.http["alice"], world.http["bob"]), world.a, tag="again")
    after = await world.state()
    for space in world.admins:
        if space != world.a:
            assert after.spaces[space] == before.spaces[space]
    logged = [after.spaces[world.a][2]["conflicts"], before.spaces[world.a][2]["conflicts"]]
    assert len(logged[0]) == len(logged[1]) + 1


async def test_a_member_cannot_take_over_another_members_mutation_ids(world: World) -> None:
    """bob (a writer of A) sees alice's mutation ids in every pull; claiming her client's
    next numbers must not make her later writes `duplicate` (silently never applied)."""
    alice, bob = world.http["alice"], world.http["bob"]
    changes, _ = await pull_everything(bob, world.a)
    client = next(c["id"] for c in changes if c["id"].startswith("alice-node:"))
    client = client.rsplit(":", 1)[0]
    squat = {**world.writers["bob"].lww("k", "note", "squatted"), "id": f"{client}:{10**17}"}
    assert (await push(bob, [squat], world.a))[0] == 200
    mine = world.writers["alice"].lww("k", "title", "alice's next write")
    status, body = await push(alice, [mine], world.a)
    assert (status, body["results"]) == (200, [{"id": mine["id"], "outcome": "applied"}])
    assert "alice's next write" in {c["value"] for c in (await pull_everything(bob, world.a))[0]}


# 5. Property: membership operations follow the rules -----------------------------------------

ACTORS = ("alice", "bob", "carol")
TARGETS = (*ACTORS, "dave")
ROLES: tuple[Role, ...] = ("read", "write", "admin")


@attrs.define
class Model:
    """The membership rules of one shared space, created by alice."""

    members: dict[str, Role] = attrs.Factory(lambda: {"alice": "admin"})

    def apply(self, op: tuple[str, str, str, Role | None]) -> tuple[int, str | None]:
        """The answer to `op` (``(kind, actor, target, role)``): status, error code."""
        kind, actor, target, role = op
        if actor not in self.members:
            return 404, "space_not_found"
        needed: Role = "read" if kind == "delete" and target == actor else "admin"
        if not role_allows(self.members[actor], needed):
            return 403, "forbidden"
        current = self.members.get(target)
        losing_admin = current == "admin" and (kind == "delete" or role != "admin")
        if losing_admin and list(self.members.values()).count("admin") == 1:
            return 409, "last_admin"
        if kind == "put":
            assert role is not None
            self.members[target] = role
            return 200, None
        self.members.pop(target, None)
        return 204, None


membership_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]),
        st.sampled_from(ACTORS),
        st.sampled_from(TARGETS),
        st.sampled_from(ROLES),
    ),
    min_size=1,
    max_size=12,
)


async def run_ops(db: Path | str, ops: list[tuple[str, str, str, Role]]) -> None:
    async with (
        running_server(db, users=USERS, jobs=None) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        http = {u: await stack.enter_async_context(server.client(u)) for u in ACTORS}
        space = await new_space(http["alice"])
        model = Model()
        for kind, actor, target, role in ops:
            url = f"/v1/spaces/{space}/members/{target}"
            if kind == "put":
                request = http[actor].put(url, json={"role": role})
            else:
                request = http[actor].delete(url)
            async with request as resp:
                body = await resp.read()
                answer = (
                    resp.status,
                    json.loads(body)["error"]["code"] if resp.status >= 400 else None,
                )
            op = (kind, actor, target, role if kind == "put" else None)
            assert answer == model.apply(op), (op, body)  # a refusal leaves the model as is
            if answer[0] == 200:
                assert json.loads(body) == {"user": target, "role": role}
            await check_memberships(http, space, model)


async def check_memberships(
    http: dict[str, aiohttp.ClientSession], space: str, model: Model
) -> None:
    """Every user's view of the space agrees with the model."""
    for user, session in http.items():
        async with session.get(f"/v1/spaces/{space}/members") as resp:
            if user in model.members:
                listed = (await resp.json())["members"]
                assert {m["user"]: m["role"] for m in listed} == model.members
            else:
                assert resp.status == 404
        async with session.get("/v1/spaces") as resp:  # this example's space only
            shared = [s for s in (await resp.json())["spaces"] if s["id"] == space]
        assert [s["role"] for s in shared] == (
            [model.members[user]] if user in model.members else []
        )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def example_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], Path | str]:
    """Where each example's server keeps its database: a new file, or one PostgreSQL
    database for them all (each example creates a space of its own)."""
    if request.param == "postgres":
        url = str(request.getfixturevalue("pg_module_url"))
        return lambda: url
    return lambda: tmp_path_factory.mktemp("model") / f"{secrets.token_hex(4)}.db"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=membership_ops)
def test_membership_operations_follow_the_rules_and_refusals_change_nothing(
    example_db: Callable[[], Path | str], ops: list[tuple[str, str, str, Role]]
) -> None:
    asyncio.run(run_ops(example_db(), ops))
