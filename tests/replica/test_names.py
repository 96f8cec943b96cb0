"""A name no store can hold (a lone surrogate is not UTF-8) is refused with a clear error.

The server refuses such a name (its JSON parser does), so a replica must never
queue a write under one: `Replica.put` and `delete` raise `WireError` (a
ValueError) naming the member, and nothing is written.
"""

from __future__ import annotations

import pytest

from quietsync.protocol import WireError, check_name
from quietsync.replica import Replica
from quietsync.replica.replica import sync_port

BAD = ["\ud800", "caf\u00e9\udfff", "😀\udc00e\u0301"]


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("member", ["collection", "key", "field"])
def test_a_lone_surrogate_in_a_name_is_refused(replica: Replica, name: str, member: str) -> None:
    replica.put("items", "a", {"ok": 1})
    outbox = sync_port(replica).outbox_batch(100)
    args = {"collection": "items", "key": "k", "field": "f", member: name}
    with pytest.raises(WireError, match=f"{member!r} is not valid UTF-8"):
        replica.put(args["collection"], args["key"], {args["field"]: "é"})
    if member != "field":
        with pytest.raises(WireError, match=f"{member!r} is not valid UTF-8"):
            replica.delete(args["collection"], args["key"])
    assert sync_port(replica).outbox_batch(100) == outbox
    assert replica.query("items") == [{"ok": 1}]


@pytest.mark.parametrize("name", ["é", "😀", "e\u0301", "𝄞" * 64, "日本語のキー"])
def test_names_in_any_script_are_names(name: str) -> None:
    assert check_name("field", name) == name


@pytest.mark.parametrize("name", ["\x00", "a\x00b", "items\x00"])
@pytest.mark.parametrize("member", ["collection", "key", "field"])
def test_nul_in_a_name_is_refused(replica: Replica, name: str, member: str) -> None:
    """PostgreSQL text cannot hold NUL, and the replica separates a space from a collection
    with it (`quietsync.replica.spaces`): no name may hold one."""
    args = {"collection": "items", "key": "k", "field": "f", member: name}
    with pytest.raises(WireError, match=f"{member!r} holds NUL"):
        replica.put(args["collection"], args["key"], {args["field"]: 1})
    with pytest.raises(WireError, match=f"{member!r} holds NUL"):
        replica.text_insert(args["collection"], args["key"], args["field"], 0, "é")
    assert replica.pending_count() == 0
