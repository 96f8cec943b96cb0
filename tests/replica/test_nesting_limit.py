"""The protocol's nesting limit on the replica: what it writes and what it decodes.

`Replica.put` refuses a value nested deeper than `MAX_NESTING` (the server
would refuse it, so it must never be queued), and a pull page or live
message holding one is a `ProtocolError`, however deep, never a raw
`RecursionError`.
"""

from __future__ import annotations

from typing import Any

import pytest

from quietsync.protocol import MAX_NESTING, WireChanges, WirePullAnswer, encode
from quietsync.replica import ProtocolError, Replica
from quietsync.replica.replica import sync_port
from quietsync.replica.transport import decode_live, decode_pull
from tests.replica.conftest import Server


def _nested(depth: int) -> Any:
    """`depth` levels of lists and objects around a Unicode leaf."""
    value: Any = "é😀𝄞e\u0301"
    for level in range(depth):
        value = [value] if level % 2 else {"ключ🔑": value}
    return value


def test_put_accepts_a_value_at_the_limit(replica: Replica) -> None:
    replica.put("items", "a", {"deep": _nested(MAX_NESTING)})
    assert replica.get("items", "a") == {"deep": _nested(MAX_NESTING)}


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 600])
def test_put_refuses_a_value_past_the_limit_naming_the_field(replica: Replica, depth: int) -> None:
    replica.put("items", "a", {"ok": 1})
    outbox = sync_port(replica).outbox_batch(100)
    with pytest.raises(TypeError, match=f"'tief😀'.*nested deeper than {MAX_NESTING} levels"):
        replica.put_many("items", {"a": {"ok": 2}, "b": {"fine": 1, "tief😀": _nested(depth)}})
    assert replica.get("items", "a") == {"ok": 1}
    assert replica.get("items", "b") is None
    assert sync_port(replica).outbox_batch(100) == outbox


def _deep(depth: int) -> bytes:
    """The JSON of a value `depth` levels deep (bare brackets past what an encoder nests)."""
    return encode(_nested(depth)) if depth <= 300 else b"[" * depth + b"]" * depth


def _page(depth: int, server: Server) -> bytes:
    change = server.change("k", "f", "placeholder")
    page = encode(WirePullAnswer([change.to_wire()], 1, False, "h"))
    return page.replace(b'"placeholder"', _deep(depth))


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300, 10_000])
def test_a_pulled_page_nested_past_the_limit_is_a_protocol_error(
    server: Server, depth: int
) -> None:
    with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_NESTING} levels"):
        decode_pull(_page(depth, server))


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 10_000])
def test_a_live_message_nested_past_the_limit_is_a_protocol_error(
    server: Server, depth: int
) -> None:
    change = server.change("k", "f", "placeholder")
    message = encode(WireChanges([change.to_wire()], 1, 0))
    with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_NESTING} levels"):
        decode_live(message.replace(b'"placeholder"', _deep(depth)))


def test_a_page_at_the_limit_decodes(server: Server) -> None:
    page = decode_pull(_page(MAX_NESTING, server))
    assert [c.value for c in page.changes] == [_nested(MAX_NESTING)]
