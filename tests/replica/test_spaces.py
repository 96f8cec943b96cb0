"""Spaces in one replica file: records of different spaces never meet (`replica.spaces`).

The mapping is checked as a property over any names (emoji, astral-plane
letters, combining marks, NUL-free control characters), then through the
app's face (`Replica.space`) and the sync side's (`sync_port(replica, space)`):
the same collection and key in the private space and in two shared spaces
are three records, each space has its own outbox, cursor, conflicts and
resync, and a purged space leaves nothing behind but its set-aside writes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Conflict, Side
from quietsync.protocol import SPACE_ID_MAX
from quietsync.replica import ChangeEvent, Replica
from quietsync.replica.replica import sync_port
from quietsync.replica.spaces import (
    PRIVATE,
    check_space,
    collection_range,
    qualify,
    space_key,
    unqualify,
)
from tests.replica.conftest import Server

NAMES = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=64
)
SPACES = st.one_of(st.none(), NAMES.map(lambda s: "s:" + s))
UNICODE_KEYS = ["k", "😀", "𝄞𝕏", "e\u0301", "e\u0301\u0302", "日本語", "ﬁ", "\u200d👩‍👩‍👧"]
A, B = "s:aaaaaaaaaaaaaaaaaaaaaaaaaa", "s:bbbbbbbbbbbbbbbbbbbbbbbbbb"


def inside(name: str, space: str | None) -> bool:
    low, high = collection_range(space)
    return low <= name and (high is None or name < high)


@given(SPACES, NAMES, SPACES, NAMES)
def test_the_mapping_is_collision_proof_and_each_space_is_its_own_range(
    s1: str | None, c1: str, s2: str | None, c2: str
) -> None:
    q1, q2 = qualify(s1, c1), qualify(s2, c2)
    assert unqualify(q1) == (s1, c1)
    assert (q1 == q2) == ((s1, c1) == (s2, c2))
    assert inside(q1, s1)
    assert inside(q1, s2) == (s1 == s2)
    # SQLite compares text as UTF-8 bytes: the ranges must hold there too
    low, high = collection_range(s2)
    in_bytes = low.encode() <= q1.encode() and (high is None or q1.encode() < high.encode())
    assert in_bytes == (s1 == s2)


@pytest.mark.parametrize("bad", ["", "s:\x00x", "s:\ud800", "x" * (SPACE_ID_MAX + 1), 7, None])
def test_a_space_id_that_cannot_be_one_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        check_space(bad)


def test_a_u_id_is_the_private_space() -> None:
    assert space_key("u:alice") is PRIVATE
    assert space_key(A) == A


def fill(view: Any, tag: str) -> None:
    for key in UNICODE_KEYS:
        view.put("notes", key, {"who": tag, "n": 1})
    view.text_insert("notes", "😀", "body", 0, f"{tag}: héllo 𝄞")


def test_the_same_collection_and_key_in_three_spaces_are_three_records(replica: Replica) -> None:
    views = {"private": replica, "a": replica.space(A), "b": replica.space(B)}
    for tag, view in views.items():
        fill(view, tag)
    for tag, view in views.items():
        assert view.keys("notes") == sorted(UNICODE_KEYS)
        assert {r["who"] for r in view.query("notes", where={"n": 1})} == {tag}
        assert view.get("notes", "😀") == {"who": tag, "n": 1, "body": f"{tag}: héllo 𝄞"}
    replica.space(A).delete("notes", "e\u0301")
    replica.space(A).text_delete("notes", "😀", "body", 0, 3)
    assert replica.space(A).get("notes", "e\u0301") is None
    assert replica.get("notes", "e\u0301") == {"who": "private", "n": 1}
    assert replica.space(B).get("notes", "😀")["body"] == "b: héllo 𝄞"
    assert replica.space(A).get("notes", "😀")["body"] == "héllo 𝄞"
    assert replica.space("u:whoever") is replica


def test_a_subscriber_hears_only_its_space_under_the_space_s_own_names(replica: Replica) -> None:
    heard: dict[str, list[ChangeEvent]] = {"private": [], "a": []}
    replica.subscribe("notes", heard["private"].append)
    replica.space(A).subscribe("notes", heard["a"].append, key="😀")
    replica.space(A).put("notes", "😀", {"x": 1})
    replica.space(A).put("notes", "other", {"x": 1})
    replica.space(B).put("notes", "😀", {"x": 1})
    assert heard == {"private": [], "a": [ChangeEvent("notes", "😀", frozenset({"x"}), "local")]}


def test_each_space_pushes_its_own_outbox_under_its_own_names(replica: Replica) -> None:
    replica.put("notes", "k", {"v": "private"})
    replica.space(A).put("notes", "k", {"v": "a"})
    replica.space(B).text_insert("notes", "k", "body", 0, "b")
    batches = {s: sync_port(replica, s).outbox_batch(100) for s in (PRIVATE, A, B)}
    assert [(m.collection, m.key, m.value) for m in batches[PRIVATE]] == [("notes", "k", "private")]
    assert [(m.collection, m.key, m.value) for m in batches[A]] == [("notes", "k", "a")]
    assert [(m.collection, m.kind) for m in batches[B]] == [("notes", "crdt")]
    sync_port(replica, A).mark_pushed([m.id for m in batches[A]])
    assert sync_port(replica, A).outbox_batch(100) == []
    assert len(sync_port(replica, PRIVATE).outbox_batch(100)) == 1
    assert replica.pending_count() == 2


def test_each_space_merges_its_own_changes_with_its_own_cursor(
    replica: Replica, server: Server
) -> None:
    port_a, port_b = sync_port(replica, A), sync_port(replica, B)
    port_a.apply_remote([server.change("😀", "v", "from a")], cursor=5, history="ha")
    port_b.apply_remote([server.text("😀", "body", "B: 𝄞e\u0301")], cursor=2, history="hb")
    assert replica.space(A).get("items", "😀") == {"v": "from a"}
    assert replica.space(B).get("items", "😀") == {"body": "B: 𝄞e\u0301"}
    assert replica.get("items", "😀") is None
    assert (port_a.cursor, port_a.history, port_b.cursor, port_b.history) == (5, "ha", 2, "hb")
    assert (sync_port(replica).cursor, sync_port(replica).history) == (0, None)
    state = port_b.field_state("items", "😀", "body")
    assert state is not None and state.write.value == "B: 𝄞e\u0301"


def conflict(collection: str = "notes") -> Conflict:
    stamp = HLC(1_700_000_000_000, 0, "n1")
    return Conflict(
        collection,
        "k",
        "v",
        Side(2, HLC(1_700_000_000_001, 0, "n2"), "bob"),
        Side(1, stamp, "alice"),
        "server",
    )


def test_conflicts_are_kept_per_space_even_when_identical(replica: Replica) -> None:
    for space in (PRIVATE, A, B):
        assert sync_port(replica, space).record_conflicts([conflict()]) == 1
        assert sync_port(replica, space).record_conflicts([conflict()]) == 0
    assert sync_port(replica, A).record_conflict_page([conflict("other")], 9) == [conflict("other")]
    assert replica.conflicts() == [conflict()]
    assert replica.space(A).conflicts() == [conflict(), conflict("other")]
    assert (sync_port(replica, A).conflict_position, sync_port(replica).conflict_position) == (9, 0)


def test_a_resync_in_one_space_requeues_and_sweeps_that_space_only(
    replica: Replica, server: Server
) -> None:
    for space in (PRIVATE, A, B):
        port = sync_port(replica, space)
        port.apply_remote([server.change("gone", "v", 1), server.change("kept", "v", 2)], 2, "h")
    port_a = sync_port(replica, A)
    assert port_a.restart("h2", "history_changed") == 2
    assert {m.key for m in port_a.outbox_batch(100)} == {"gone", "kept"}
    assert replica.pending_count() == 2
    port_a.mark_pushed([m.id for m in port_a.outbox_batch(100)])
    port_a.restart("h3", "cursor_too_old")
    assert port_a.sweeping and not sync_port(replica).sweeping
    port_a.apply_remote([server.change("kept", "v", 3)], 1, "h3")
    port_a.finish_sweep()
    assert replica.space(A).keys("items") == ["kept"]
    assert replica.keys("items") == replica.space(B).keys("items") == ["gone", "kept"]


def test_a_purged_space_leaves_only_its_set_aside_writes(replica: Replica, server: Server) -> None:
    fill(replica, "private")
    fill(replica.space(B), "b")
    port_a = sync_port(replica, A)
    port_a.apply_remote([server.text("😀", "body", "servér 𝄞")], cursor=3, history="h")
    port_a.record_conflicts([conflict()])
    replica.space(A).put("notes", "mine", {"v": "unsynced ✓"})
    replica.space(A).text_insert("items", "😀", "body", 0, "→")
    heard: list[ChangeEvent] = []
    replica.space(A).subscribe("items", heard.append)
    pending = replica.pending_count()

    set_aside = port_a.purge("space_revoked")

    assert [(m.collection, m.key, m.field) for m in set_aside] == [
        ("notes", "mine", "v"),
        ("items", "😀", "body"),
    ]
    assert replica.pending_count() == pending - 2
    refused = [r for r in replica.refused() if r.space == A]
    assert [(r.mutation.collection, r.mutation.value, r.reason) for r in refused] == [
        ("notes", "unsynced ✓", "space_revoked"),
        ("items", None, "space_revoked"),
    ]
    assert heard == [ChangeEvent("items", "😀", frozenset({"body"}), "remote")]
    view = replica.space(A)
    assert view.keys("notes") == view.keys("items") == view.conflicts() == []
    assert view.get("items", "😀") is None
    assert (port_a.cursor, port_a.history, port_a.conflict_position) == (0, None, 0)
    assert port_a.local_spaces() == {B}
    assert replica.keys("notes") == replica.space(B).keys("notes") == sorted(UNICODE_KEYS)
    assert replica.space(B).get("notes", "😀")["body"] == "b: héllo 𝄞"
    with pytest.raises(ValueError, match="private"):
        sync_port(replica).purge("space_revoked")


def test_a_purge_survives_reopening(path: Any) -> None:
    with Replica.open(path, node_id="local") as replica:
        replica.space(A).text_insert("items", "k", "body", 0, "x" * 50)
        sync_port(replica, A).purge("space_revoked")
    with Replica.open(path, node_id="local") as replica:
        assert replica.space(A).get("items", "k") is None
        assert [r.space for r in replica.refused()] == [A]
        assert sync_port(replica).local_spaces() == set()
