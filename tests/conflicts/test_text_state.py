"""`merge_text_state`: a stored text state merged through a document, compact and lossless.

1. Whatever the delivery order, duplicates and grouping of a set of updates,
   a state kept only when a merge reports it `added` something ends with the
   text of a document that applied them all in order, with nothing pending.
2. "Added nothing" is decided by what the document holds, not by bytes:
   updates it holds already (again, or inside a bigger one, or against an
   old merged-bytes state) add nothing; a new deletion does, and so does a
   deletion of text that has not arrived.
3. The state is the document's own encoding: after many edits with
   deletions it stays near the author's document, where merged bytes grow
   with every keystroke.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import (
    CrdtText,
    CrdtUpdateError,
    FieldRef,
    initial_text_update,
    merge_text_state,
    merge_text_updates,
)
from tests.conflicts.strategies import unicode_text

REF = FieldRef("notes", "n1", "body")
LETTERS = ["a", "é", "😀", "𝔄", "\u0301", "ñ", "中", " "]
"""One code point each: accents, emoji, astral, a combining mark, CJK."""


def typing(author: CrdtText, rnd: random.Random, keystrokes: int) -> list[bytes]:
    """Edits as a writer makes them: letters typed at a cursor, words deleted behind it,
    now and then a jump elsewhere; one update per keystroke."""
    updates, cursor = [], 0
    for _ in range(keystrokes):
        roll = rnd.random()
        if roll < 0.1 and cursor:
            count = rnd.randint(1, min(cursor, 8))
            updates.append(author.delete(cursor - count, count))
            cursor -= count
        elif roll < 0.15:
            cursor = rnd.randint(0, len(author))
        else:
            updates.append(author.insert(cursor, rnd.choice(LETTERS)))
            cursor += 1
    return updates


@st.composite
def authored_updates(draw: st.DrawFn) -> tuple[list[bytes], str]:
    """Updates by three authors, each editing its own copy and sometimes catching up with
    another's update first; and the text of a document that applied them in order."""
    authors = [CrdtText(client_id=n + 1) for n in range(3)]
    updates: list[bytes] = [initial_text_update(REF, draw(unicode_text))]
    for author in authors:
        author.apply(updates[0])
    for _ in range(draw(st.integers(1, 12))):
        author = draw(st.sampled_from(authors))
        if draw(st.booleans()):
            author.apply(draw(st.sampled_from(updates)))
        if len(author) and draw(st.booleans()):
            index = draw(st.integers(0, len(author) - 1))
            updates.append(author.delete(index, draw(st.integers(1, len(author) - index))))
        else:
            updates.append(author.insert(draw(st.integers(0, len(author))), draw(unicode_text)))
    reference = CrdtText()
    for update in updates:
        reference.apply(update)
    return updates, reference.text


@given(authored_updates(), st.data())
def test_any_delivery_order_and_grouping_converges_keeping_only_what_added(
    authored: tuple[list[bytes], str], data: st.DataObject
) -> None:
    updates, expected = authored
    deliveries = data.draw(
        st.permutations(updates + data.draw(st.lists(st.sampled_from(updates), max_size=6)))
    )
    state: bytes | None = None
    while deliveries:
        size = data.draw(st.integers(1, len(deliveries)))
        group, deliveries = deliveries[:size], deliveries[size:]
        merged = merge_text_state(state, *group)
        if state is None or merged.added:  # what the server does: "nothing added" is not stored
            state = merged.state
        else:
            assert CrdtText(merged.state).text == CrdtText(state).text
    assert state is not None
    doc = CrdtText(state)
    assert (doc.text, doc.has_pending) == (expected, False)
    again = merge_text_state(state, *data.draw(st.lists(st.sampled_from(updates), min_size=1)))
    assert not again.added


def test_updates_the_state_holds_add_nothing() -> None:
    author = CrdtText(client_id=7)
    keystrokes = [author.insert(0, "ça"), author.insert(2, " 😀"), author.delete(0, 1)]
    state = merge_text_state(None, *keystrokes).state
    assert not merge_text_state(state, *keystrokes).added  # pushed again
    assert not merge_text_state(state, author.state()).added  # inside one bigger update
    assert not merge_text_state(state, keystrokes[1]).added  # one of them, alone
    assert not merge_text_state(state).added
    deletion = author.delete(1, 1)
    assert merge_text_state(state, deletion).added  # a new deletion of held text
    assert CrdtText(merge_text_state(state, deletion).state).text == "a😀"


def test_an_old_merged_bytes_state_adds_nothing_to_itself_and_is_compacted() -> None:
    """The encodings differ (merged bytes against a document's), the content does not."""
    author = CrdtText(client_id=3)
    keystrokes = typing(author, random.Random(3), 1_000)
    old = merge_text_updates(None, *keystrokes)
    merged = merge_text_state(old, *keystrokes[:10], author.state())
    assert not merged.added
    assert len(merged.state) < len(old) / 2
    assert CrdtText(merged.state).text == CrdtText(old).text == author.text


def test_a_deletion_before_its_text_is_added_and_kept_until_the_text_comes() -> None:
    author = CrdtText(client_id=1)
    typed = author.insert(0, "n\u0308on 🏳️‍🌈")
    deleted = author.delete(0, 2)
    early = merge_text_state(None, deleted)
    assert early.added and CrdtText(early.state).has_pending
    assert merge_text_state(early.state, deleted).added  # it waits still: counted as new
    late = merge_text_state(early.state, typed)
    assert late.added
    doc = CrdtText(late.state)
    assert (doc.text, doc.has_pending) == ("on 🏳️‍🌈", False)
    assert not merge_text_state(late.state, deleted, typed).added


def test_the_state_stays_near_the_documents_own_encoding_after_many_edits() -> None:
    author = CrdtText(client_id=11)
    updates = typing(author, random.Random(14), 3_000)
    state: bytes | None = None
    for start in range(0, len(updates), 10):  # pushes of ten keystrokes, as a replica's
        state = merge_text_state(state, *updates[start : start + 10]).state
    assert state is not None
    own = len(author.state())
    assert len(state) <= 1.5 * own
    assert len(state) <= 1.5 * len(CrdtText(state).state())
    assert len(merge_text_updates(None, *updates)) > 2 * own  # what the server stored before
    assert CrdtText(state).text == author.text


@pytest.mark.parametrize(
    "garbage",
    [b"garbage!", b"\x00\x00junk", initial_text_update(REF, "é") + b"\x01", b"\xff" * 8],
)
def test_garbage_is_refused_whole(garbage: bytes) -> None:
    state = merge_text_state(None, initial_text_update(REF, "kept")).state
    good = CrdtText(state, client_id=5).insert(0, "new ")
    with pytest.raises(CrdtUpdateError):
        merge_text_state(state, good, garbage)
    assert CrdtText(state).text == "kept"
