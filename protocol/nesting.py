"""The one nesting-depth limit of JSON values, agreed by the server and every replica.

A field value may hold lists and objects nested at most `MAX_NESTING` levels
(a scalar is 0 levels, ``[1]`` one, ``{"a": [1]}`` two). Without one agreed
limit each side stopped where its own recursion did: the server accepted
values about 490 levels deep that a replica then failed to decode with a
raw `RecursionError`, and bodies a little deeper were a 500. 64 levels is far
more than any record needs and far below every recursion limit on the way
(msgspec's decoder, `canonical_json`, Python's `json`), so whatever one side
accepts the other can parse, store and send back.

The server refuses a deeper value as an ``invalid_mutation``, `Replica.put`
refuses it before queueing it, and a replica decoding a deeper value from
the server raises `ProtocolError` (``docs/protocol.md``, "Limits").
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["MAX_NESTING", "nested_too_deep", "too_deep_message"]

MAX_NESTING: Final = 64
"""Levels of lists and objects a JSON value may nest."""


def nested_too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """True if `value` nests lists, tuples or dicts more than `limit` levels deep.

    Walks one level at a time without recursion, so any depth (even a
    cyclic value, which is infinitely deep) is answered without a
    `RecursionError`, and stops at the first level past `limit`.
    """
    level = [value]  # the items `depth` levels down
    for _depth in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, list | tuple | dict)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, list | tuple | dict) for item in level)


def too_deep_message(what: str) -> str:
    """The one wording of the refusal, naming `what` was too deep."""
    return f"{what} is nested deeper than {MAX_NESTING} levels"
