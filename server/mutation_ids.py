"""Mutation ids: ``<client>:<n>``, and whose mark a client's ids are answered from.

A client's mutation numbers grow for its life (`server.store.ClientMark`),
which is what makes a retried push idempotent (`server.sync`).
"""

from __future__ import annotations

import re

from quietsync.protocol import WireError, private_space

__all__ = ["client_and_number", "mark_key"]

_MUTATION_ID = re.compile(r"(.{1,100}):([1-9][0-9]{0,17})")
"""``<client>:<n>``: a client's own name, then its mutation number (from 1)."""


def client_and_number(mid: str) -> tuple[str, int]:
    """The client and the number of mutation id `mid`; `WireError` if it is not one."""
    match = _MUTATION_ID.fullmatch(mid)
    if match is None:
        raise WireError(f"'id' must be '<client>:<n>' with n a positive integer, got {mid!r:.80}")
    return match[1], int(match[2])


def mark_key(space: str, by: str | None, client: str) -> str:
    """Whose mark a client's ids are answered from: in a shared space, the pushing
    member's own (``<len>:<user>:<client>``, one key per user and client); in a private
    space (one user) and for the server's own writes, the client's, as before spaces."""
    if by is None or space == private_space(by):
        return client
    return f"{len(by)}:{by}:{client}"
