"""Fixtures for replica tests: real SQLite files in ``tmp_path``, a server-side clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quietsync.conflicts import HLC, Clock, CrdtText
from quietsync.protocol import Change
from quietsync.replica import Replica


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "replica.db"


@pytest.fixture
def replica(path: Path) -> Iterator[Replica]:
    with Replica.open(path, node_id="local") as r:
        yield r


class Server:
    """Builds the `Change`s a server would send, stamped by its own clock."""

    def __init__(self) -> None:
        self.clock = Clock("server")
        self.seq = 0

    def change(
        self,
        key: str,
        field: str,
        value: Any = None,
        *,
        base: HLC | None = None,
        stamp: HLC | None = None,
        collection: str = "items",
        update: bytes | None = None,
        mirror: bool = False,
    ) -> Change:
        self.seq += 1
        return Change(
            id=f"srv:{self.seq}",
            collection=collection,
            key=key,
            field=field,
            kind="lww" if update is None else "crdt",
            stamp=stamp or self.clock.now(),
            base=base,
            value=value,
            update=update,
            seq=None if mirror else self.seq,
        )

    def text(self, key: str, field: str, content: str, **kwargs: Any) -> Change:
        """A crdt change inserting `content` into a fresh document of the server's own."""
        return self.change(key, field, update=CrdtText(client_id=7).insert(0, content), **kwargs)


@pytest.fixture
def server() -> Server:
    return Server()
