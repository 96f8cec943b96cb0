"""The delete-versus-edit rule of `conflicts.tombstone`, as properties over delivery orders.

A record is simulated as the server keeps it: each field merged by
`merge_field` (last writer wins), and after each delivery `uncovered_edits`
asked what that step uncovered.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Conflict, FieldRef, FieldWrite, merge_field, uncovered_edits

from .strategies import stamps

TOMB = "_deleted"
REF = FieldRef("notes", "n1", TOMB)
NAMES = ("title", "body", "émoji 🎉")

Delivery = tuple[str, FieldWrite]  # one field's write (a write setting two fields is two)


def deliver(order: list[Delivery]) -> tuple[dict[str, FieldWrite], list[Conflict]]:
    """Merge `order` one write at a time; the record's final fields and every report."""
    record: dict[str, FieldWrite] = {}
    reports: list[Conflict] = []
    for name, write in order:
        merge = merge_field(record.get(name), write)
        record[name] = merge.state
        edits = {n: w for n, w in record.items() if n != TOMB}
        changed = [name] if merge.changed else []
        reports += uncovered_edits(record.get(TOMB), edits, changed, ref=REF)
    return record, reports


@st.composite
def delete_racing_edits(draw: st.DrawFn) -> list[Delivery]:
    """One delete and one edit per field, all with distinct stamps, values in full Unicode."""
    chosen = draw(st.lists(stamps, min_size=len(NAMES) + 1, max_size=len(NAMES) + 1, unique=True))
    values = st.text(max_size=6) | st.integers() | st.none()
    edits = [(name, FieldWrite(draw(values), s)) for name, s in zip(NAMES, chosen, strict=False)]
    return [*edits, (TOMB, FieldWrite(True, chosen[-1]))]


def losers(reports: list[Conflict]) -> dict[HLC, Any]:
    return {c.loser.stamp: c.loser.value for c in reports}


@given(st.data(), delete_racing_edits())
def test_a_delete_wins_and_exactly_the_later_edits_are_reported_in_any_order(
    data: st.DataObject, deliveries: list[Delivery]
) -> None:
    order = data.draw(st.permutations(deliveries))
    record, reports = deliver(order)
    tomb = record[TOMB]
    assert tomb.value is True  # the delete wins, whatever came first
    later = {w.stamp: {n: w.value} for n, w in deliveries if n != TOMB and w.stamp > tomb.stamp}
    assert losers(reports) == later  # every edit stamped after it, none before
    assert len(reports) == len(later)  # each once
    for conflict in reports:
        assert (conflict.field, conflict.winner.value, conflict.winner.stamp) == (
            TOMB,
            True,
            tomb.stamp,
        )


@given(st.data(), delete_racing_edits())
def test_a_resurrected_record_reports_nothing_more(
    data: st.DataObject, deliveries: list[Delivery]
) -> None:
    *edits, (_, delete) = deliveries
    top = max(w.stamp for _, w in deliveries)
    undelete = (TOMB, FieldWrite(False, HLC(top.wall_ms + 1, 0, "a"), base=delete.stamp))
    order = data.draw(st.permutations([*edits, (TOMB, delete)]))
    _, before = deliver(order)
    record, reports = deliver([*order, undelete])
    assert record[TOMB].value is False  # an edit that saw the delete resurrects the record
    assert reports == before  # and is no conflict
    assert uncovered_edits(None, dict(edits), [n for n, _ in edits], ref=REF) == []


def test_one_write_setting_two_fields_is_one_conflict() -> None:
    delete = FieldWrite(True, HLC(10, 0, "a"))
    edit = HLC(11, 0, "b")
    fields = {"title": FieldWrite("Crème brûlée 🍮", edit), "body": FieldWrite("e\u0301", edit)}
    (conflict,) = uncovered_edits(delete, fields, [TOMB], ref=REF, detected_by="server")
    assert conflict.loser.value == {"body": "e\u0301", "title": "Crème brûlée 🍮"}
    assert (conflict.loser.stamp, conflict.winner.stamp) == (edit, delete.stamp)
    assert conflict.detected_by == "server"
