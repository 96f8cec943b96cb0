"""Wire messages: round trips and validating decode."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Conflict, Side, canonical_json
from quietsync.protocol import Change, Mutation, NotJsonError, Unreadable, WireError, decode_push
from tests.conflicts.strategies import json_values, stamps

STAMP = HLC(1_700_000_000_000, 3, "node-a")


def lww(**overrides: Any) -> dict[str, Any]:
    obj = Mutation("a:1", "messages", "m1", "content", "lww", STAMP, None, value="hi").to_json()
    obj.update(overrides)
    return obj


@given(json_values, stamps, st.none() | stamps)
def test_lww_mutation_round_trips(value: Any, stamp: HLC, base: HLC | None) -> None:
    mutation = Mutation("a:1", "c", "k", "f", "lww", stamp, base, value=value)
    assert Mutation.from_json(mutation.to_json()) == mutation


@given(st.binary(max_size=64), st.none() | st.integers(0, 10**12))
def test_crdt_change_round_trips(update: bytes, seq: int | None) -> None:
    change = Change("srv:1", "c", "k", "f", "crdt", STAMP, None, update=update, seq=seq)
    decoded = Change.from_json(change.to_json())
    assert decoded == change


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "map"}, "Invalid enum value 'map' - at `kind`"),
        ({"id": ""}, "length >= 1 - at `id`"),
        ({"collection": 5}, "Expected `str`, got `int` - at `collection`"),
        ({"key": "k" * 257}, "length <= 256 - at `key`"),
        ({"stamp": "yesterday"}, "`stamp` is not an HLC stamp"),
        ({"base": 17}, "at `base`"),
        ({"update": "AAAA"}, "carries 'value', not 'update'"),
        ({"value": "\ud800"}, "'value' is not storable JSON"),
        ({"value": {"x": float("nan")}}, "'value' is not storable JSON"),
        ({"collection": "a\x00b"}, "'collection' holds NUL"),
        ({"key": "\x00"}, "'key' holds NUL"),
        ({"field": "f\x00"}, "'field' holds NUL"),
        ({"id": "n1:\x001"}, "'id' holds NUL"),
        ({"id": "n1:\ud800"}, "'id' is not valid UTF-8 \\(a lone surrogate\\)"),
        ({"collection": "\udfff"}, "'collection' is not valid UTF-8"),
        ({"key": "a\udc00\u00e9"}, "'key' is not valid UTF-8"),
        ({"field": "\ud800"}, "'field' is not valid UTF-8"),
        ({"kind": "\ud800"}, "holds a lone surrogate"),
    ],
)
def test_bad_mutations_name_the_bad_member(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError, match=message):
        Mutation.from_json(lww(**overrides))


def test_lww_needs_a_value_and_crdt_needs_base64_update() -> None:
    obj = lww()
    del obj["value"]
    with pytest.raises(WireError, match="needs 'value'"):
        Mutation.from_json(obj)
    crdt = lww(kind="crdt")
    with pytest.raises(WireError, match="carries 'update', not 'value'"):
        Mutation.from_json(crdt)
    del crdt["value"]
    for bad, message in ((None, "Expected `bytes`, got `null` - at `update`"), ("!!!", "base64")):
        crdt["update"] = bad
        with pytest.raises(WireError, match=message):
            Mutation.from_json(crdt)
    crdt["update"] = base64.b64encode(b"\x00\x00").decode()
    assert Mutation.from_json(crdt).update == b"\x00\x00"


@pytest.mark.parametrize("bad", [[], "x", None, 3])
def test_non_objects_are_refused(bad: Any) -> None:
    with pytest.raises(WireError, match="Expected `object`"):
        Mutation.from_json(bad)


@pytest.mark.parametrize("seq", [-1, "3", 1.5, True])
def test_change_seq_must_be_a_non_negative_int(seq: Any) -> None:
    with pytest.raises(WireError, match="at `seq`"):
        Change.from_json(lww(seq=seq))


@given(json_values, json_values, stamps, stamps)
def test_conflict_json_round_trip(winner: Any, loser: Any, ws: HLC, ls: HLC) -> None:
    conflict = Conflict("c", "k", "f", Side(winner, ws), Side(loser, ls), detected_by="server")
    encoded = conflict.to_json()
    assert encoded["winner"]["node"] == ws.node
    assert Conflict.from_json(encoded) == conflict


# Values that the decode's shortcut for scalars must answer like canonical_json does.
awkward_values = st.one_of(
    json_values,
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**5000, -(10**5000)]),
    st.floats(),
    st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3),
    st.lists(st.floats(), max_size=2),
    st.dictionaries(st.integers(), st.none(), max_size=2),
)


@given(awkward_values)
def test_a_value_is_accepted_exactly_when_canonical_json_encodes_it(value: Any) -> None:
    try:
        canonical_json(value)
    except (TypeError, ValueError):
        with pytest.raises(WireError, match="'value' is not storable JSON"):
            Mutation.from_json(lww(value=value))
    else:
        assert Mutation.from_json(lww(value=value)).value is value


def _body(*mutations: Any) -> bytes:
    """A push body as a client writes it: ``ensure_ascii`` spells a lone surrogate as its escape."""
    return json.dumps({"mutations": list(mutations)}).encode()


@pytest.mark.parametrize("member", ["id", "collection", "key", "field", "value"])
def test_a_lone_surrogate_escape_makes_one_write_unreadable_not_the_body(member: str) -> None:
    """msgspec refuses the escape anywhere in the body; only the write holding it is refused."""
    good = lww(id="a:1")
    bad = {**lww(id="a:2"), member: "x\ud800"}
    decoded = decode_push(_body(good, bad, lww(id="a:3"))).writes
    assert [type(w) for w in decoded] == [Mutation, Unreadable, Mutation]
    unreadable = decoded[1]
    assert isinstance(unreadable, Unreadable)
    assert (unreadable.index, unreadable.id) == (1, None if member == "id" else "a:2")
    assert repr(member) in unreadable.reason
    assert decoded[0] == Mutation.from_json(good)


@pytest.mark.parametrize(
    "bad", ["\udc00", {"\ud800": 1}, ["\ud800"], {"kind": "\ud800"}, {"update": "\ud800"}]
)
@pytest.mark.parametrize("first", [[], [{"id": "a:0"}]])  # msgspec stops at a bad write first
def test_a_lone_surrogate_where_no_name_is_expected_is_unreadable(
    bad: Any, first: list[Any]
) -> None:
    *others, unreadable = decode_push(
        _body(*first, {**lww(), **bad} if isinstance(bad, dict) else bad)
    ).writes
    assert [type(w) for w in others] == [Unreadable] * len(first)
    assert isinstance(unreadable, Unreadable) and unreadable.index == len(first)


@pytest.mark.parametrize(
    "body",
    [
        b'{"mutations": [{"id": "\\ud800", "value": NaN}]}',
        b'{"mutations": [{"id": "\\ud800"}]',
        b'{"mutations": [{"id": "\xed\xa0\x80"}]}',  # a surrogate's UTF-8 bytes: not UTF-8
        b'\xef\xbb\xbf{"mutations": [{"id": "\\ud800"}]}',
    ],
)
def test_a_body_that_is_not_json_stays_not_json(body: bytes) -> None:
    with pytest.raises(NotJsonError, match="the body is not JSON"):
        decode_push(body)


@pytest.mark.parametrize("body", [b'["\\ud800"]', b'{"mutations": "\\ud800"}'])
def test_a_body_of_the_wrong_shape_with_a_lone_surrogate_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(WireError, match="must be a JSON object") as raised:
        decode_push(body)
    assert not isinstance(raised.value, NotJsonError)
