"""CRDT text helpers: convergence, deterministic initial content, garbage refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import (
    CrdtText,
    CrdtUpdateError,
    FieldRef,
    initial_text_update,
    merge_text_updates,
    text_chunks,
    text_of,
)
from tests.conflicts.strategies import unicode_text

REF = FieldRef("notes", "n1", "body")


def test_two_replicas_initialising_the_same_text_converge_to_one_copy() -> None:
    a = CrdtText(initial_text_update(REF, "hello"))
    b = CrdtText(initial_text_update(REF, "hello"))
    a.apply(b.state())
    b.apply(a.state())
    assert a.text == b.text == "hello"


def test_plain_concurrent_inserts_of_the_same_text_would_duplicate() -> None:
    # The pitfall that initial_text_update exists for (measured in pycrdt).
    a, b = CrdtText(), CrdtText()
    a.insert(0, "hello")
    b.insert(0, "hello")
    a.apply(b.state())
    assert a.text == "hellohello"


def test_different_initial_content_is_kept_in_the_same_order_everywhere() -> None:
    hello = initial_text_update(REF, "hello")
    world = initial_text_update(REF, "world")
    a, b = CrdtText(hello), CrdtText(world)
    a.apply(world)
    b.apply(hello)
    assert a.text == b.text
    assert sorted([a.text[:5], a.text[5:]]) == ["hello", "world"]


def test_same_content_in_another_field_is_a_different_update() -> None:
    assert initial_text_update(REF, "x") != initial_text_update(
        FieldRef("notes", "n2", "body"), "x"
    )


@given(st.data())
def test_any_delivery_order_with_duplicates_converges(data: st.DataObject) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_chunks, "CHUNK", 2)  # chunks split and merge within a few edits
        _converges(data)


def _converges(data: st.DataObject) -> None:
    replicas = [CrdtText(initial_text_update(REF, "base")) for _ in range(3)]
    models = ["base"] * 3  # each replica's text as a plain str: edits land at code points
    updates: list[bytes] = []
    for _ in range(data.draw(st.integers(1, 8))):
        n = data.draw(st.integers(0, 2))
        replica, model = replicas[n], models[n]
        if len(replica) and data.draw(st.booleans()):
            index = data.draw(st.integers(0, len(replica) - 1))
            length = data.draw(st.integers(1, len(replica) - index))
            updates.append(replica.delete(index, length))
            models[n] = model[:index] + model[index + length :]
        else:
            index = data.draw(st.integers(0, len(replica)))
            insert = data.draw(unicode_text)
            updates.append(replica.insert(index, insert))
            models[n] = model[:index] + insert + model[index:]
        assert replica.text == models[n]
    deliveries = updates + data.draw(st.lists(st.sampled_from(updates), max_size=4))
    texts = set()
    for _ in range(3):
        target = CrdtText(initial_text_update(REF, "base"))
        for update in data.draw(st.permutations(deliveries)):
            target.apply(update)
        texts.add(target.text)
    merged = None
    for update in data.draw(st.permutations(updates)):
        merged = merge_text_updates(merged, update)
    texts.add(text_of(merge_text_updates(merged, initial_text_update(REF, "base"))))
    assert len(texts) == 1


def test_garbage_update_raises_and_leaves_the_document_unchanged() -> None:
    doc = CrdtText(initial_text_update(REF, "keep me"))
    before = doc.state()
    for garbage in (b"", b"\x01\x02garbage", b"\xff" * 40):
        with pytest.raises(CrdtUpdateError, match="not a valid Yjs update"):
            doc.apply(garbage)
        with pytest.raises(CrdtUpdateError):
            merge_text_updates(before, garbage)
    assert doc.text == "keep me"
    assert doc.state() == before


def test_non_bytes_update_is_refused() -> None:
    with pytest.raises(CrdtUpdateError, match="must be bytes"):
        CrdtText().apply("text")  # type: ignore[arg-type]


def test_out_of_range_edits_raise_index_error_and_change_nothing() -> None:
    doc = CrdtText(initial_text_update(REF, "abc"))
    with pytest.raises(IndexError, match="out of range"):
        doc.insert(4, "x")
    with pytest.raises(IndexError, match="cannot delete"):
        doc.delete(1, 3)
    with pytest.raises(IndexError):
        doc.delete(-1, 1)
    with pytest.raises(TypeError):
        doc.insert(0, 5)  # type: ignore[arg-type]
    assert doc.text == "abc"


def test_delta_since_a_peer_state_vector_brings_the_peer_up_to_date() -> None:
    a = CrdtText(initial_text_update(REF, "hello"))
    b = CrdtText(a.state())
    a.insert(5, " world")
    delta = a.delta_since(b.state_vector())
    assert len(delta) < len(a.state())
    b.apply(delta)
    assert b.text == "hello world"
    with pytest.raises(CrdtUpdateError):
        a.delta_since(b"\xff\xff\xff")


def test_text_of_empty_state_is_empty() -> None:
    assert text_of(None) == ""
    assert text_of(initial_text_update(REF, "")) == ""


def test_a_chain_of_early_updates_is_not_lost_when_its_root_arrives_last() -> None:
    # Plain pycrdt drops the last link here: "abaase" instead of "aabaase".
    source = CrdtText(initial_text_update(REF, "base"))
    first, second, third = source.insert(0, "a"), source.insert(0, "a"), source.insert(3, "a")
    target = CrdtText(initial_text_update(REF, "base"))
    target.apply(second)
    target.apply(third)
    assert target.has_pending
    target.apply(first)
    assert not target.has_pending
    assert target.text == source.text == "aabaase"
    assert CrdtText(target.state()).text == "aabaase"


def test_structs_waiting_for_a_missing_update_survive_in_the_state() -> None:
    source = CrdtText(initial_text_update(REF, "base"))
    first, second = source.insert(0, "x"), source.insert(1, "y")
    early = CrdtText(initial_text_update(REF, "base"))
    early.apply(second)
    assert early.text == "base" and early.has_pending
    later = CrdtText(early.state())  # persisted and reopened before `first` arrives
    later.apply(first)
    assert later.text == "xybase"


def test_a_deletion_that_arrives_before_its_text_survives_a_snapshot() -> None:
    """pycrdt applies such a deletion when the text comes, but leaves it out of the doc's
    own state until then; a replica compacting meanwhile brought the text back on reopen."""
    author = CrdtText(client_id=1)
    typed = author.insert(0, "héllo 😀")
    deleted = author.delete(0, 2)
    early = CrdtText(client_id=2)
    early.apply(deleted)  # the deletion first: its text is still on its way
    assert early.has_pending and early.text == ""
    reopened = CrdtText(early.state(), client_id=3)  # a snapshot of it, read back
    reopened.apply(typed)
    early.apply(typed)
    assert reopened.text == early.text == author.text == "llo 😀"
    assert not early.has_pending
