"""The `Conflict` record: what a user (or a log) is told about a lost write."""

from __future__ import annotations

from typing import Any

import attrs

from quietsync.conflicts.hlc import HLC

__all__ = ["Conflict", "FieldRef", "Side"]


@attrs.frozen
class FieldRef:
    """Which field of which record: ``(collection, key, field)``."""

    collection: str
    key: str
    field: str


@attrs.frozen
class Side:
    """One side of a conflict: the value a write carried, its stamp, and who wrote it.

    `user` is the user whose push carried the write, as the server knows it
    (writes of different users meet in a shared space); None where nobody
    recorded it (a replica's own merge, the server's own writes).
    """

    value: Any
    stamp: HLC
    user: str | None = None

    @property
    def node(self) -> str:
        """The node that made the write."""
        return self.stamp.node

    def to_json(self) -> dict[str, Any]:
        side = {"value": self.value, "stamp": str(self.stamp), "node": self.node}
        if self.user is not None:
            side["user"] = self.user
        return side

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Side:
        return cls(value=obj["value"], stamp=HLC.parse(obj["stamp"]), user=obj.get("user"))


@attrs.frozen
class Conflict:
    """A write that did not see the value it replaced (or lost to), with different content.

    `winner` is what the field holds after the merge; `loser` is the write that
    was overwritten or refused. `detected_by` names the node that detected it
    (in practice the server, which reports each conflict once for everybody).
    """

    collection: str
    key: str
    field: str
    winner: Side
    loser: Side
    detected_by: str

    @property
    def ref(self) -> FieldRef:
        return FieldRef(self.collection, self.key, self.field)

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "key": self.key,
            "field": self.field,
            "winner": self.winner.to_json(),
            "loser": self.loser.to_json(),
            "detected_by": self.detected_by,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Conflict:
        """Inverse of `to_json`; a malformed object raises `ValueError` or `KeyError`."""
        return cls(
            collection=obj["collection"],
            key=obj["key"],
            field=obj["field"],
            winner=Side.from_json(obj["winner"]),
            loser=Side.from_json(obj["loser"]),
            detected_by=obj["detected_by"],
        )
