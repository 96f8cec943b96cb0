"""Property: text edits land where a Python ``str`` says, for every character, and converge.

Three replicas edit one CRDT text field with full Unicode (accents, emoji,
astral-plane letters, combining marks, CJK, and any non-surrogate code point).
After every local edit the replica's text must equal the same edit applied to
a plain ``str`` (positions are code points: pycrdt's own unit is the UTF-8
byte, so an edit after "é" landed one character off before). Now and then one
replica's updates reach another, shuffled, in small batches, with duplicates;
replicas are reopened from their files (the open documents are dropped) and
compact after a few edits. Once everything is delivered, all three hold the
same text.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quietsync.protocol import Change
from quietsync.replica import Replica, texts
from quietsync.replica.replica import sync_port

SAMPLES = ["é", "😀", "𝔄", "n\u0308", "中文", "a", "🏳️‍🌈", "\u0301"]
characters = st.one_of(
    st.sampled_from(SAMPLES), st.characters(blacklist_categories=("Cs",))
)  # every code point but lone surrogates (refused, see below)
unicode_text = st.lists(characters, min_size=1, max_size=4).map("".join)

EDIT = st.tuples(
    st.integers(0, 2),  # replica
    st.sampled_from(("insert", "insert", "delete", "sync", "reopen")),
    st.integers(0, 1_000),  # position, taken modulo the current length
    st.integers(1, 4),  # how many to delete
    unicode_text,
)


def _text(replica: Replica) -> str:
    return (replica.get("docs", "d") or {}).get("body", "")


def _sync(source: Replica, target: Replica, rng: random.Random) -> None:
    """Deliver all of `source`'s updates to `target`, shuffled, with duplicates."""
    changes = [
        Change.from_json({**m.to_json(), "seq": i})  # through the wire form, as a pull would
        for i, m in enumerate(sync_port(source).outbox_batch(10_000))
    ]
    delivery = changes + rng.sample(changes, k=len(changes) // 2)
    rng.shuffle(delivery)
    for i in range(0, len(delivery), 3):
        sync_port(target).apply_remote(delivery[i : i + 3])


@settings(max_examples=60, deadline=None)
@given(st.lists(EDIT, max_size=25), st.randoms(use_true_random=False))
def test_unicode_edits_land_at_code_points_and_three_replicas_converge(
    edits: list[tuple[int, str, int, int, str]], rng: random.Random
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(texts, "COMPACT_ROWS", 3)  # compaction on the path, not only at 1,000
        paths = [Path(tmp) / f"r{i}.db" for i in range(3)]
        replicas = [Replica.open(path, node_id=f"r{i}") for i, path in enumerate(paths)]
        try:
            for who, action, pos, count, text in edits:
                me = replicas[who]
                before = _text(me)
                if action == "sync":
                    _sync(me, replicas[(who + 1 + pos % 2) % 3], rng)
                elif action == "reopen":
                    me.close()
                    replicas[who] = Replica.open(paths[who])
                    assert _text(replicas[who]) == before
                elif action == "insert" or not before:
                    index = pos % (len(before) + 1) if before else 0
                    me.text_insert("docs", "d", "body", index, text)
                    assert _text(me) == before[:index] + text + before[index:]
                else:
                    index = pos % len(before)
                    count = min(count, len(before) - index)
                    me.text_delete("docs", "d", "body", index, count)
                    assert _text(me) == before[:index] + before[index + count :]
            for source in replicas:
                for target in replicas:
                    if source is not target:
                        _sync(source, target, rng)
            final = {_text(r) for r in replicas}
            assert len(final) == 1, final
        finally:
            for replica in replicas:
                replica.close()


def test_a_lone_surrogate_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    with Replica.open(tmp_path / "r.db") as r:
        r.text_insert("docs", "d", "body", 0, "café")
        with pytest.raises(ValueError, match="lone surrogate"):
            r.text_insert("docs", "d", "body", 2, "x\ud800y")
        with pytest.raises(ValueError, match="lone surrogate"):
            r.text_insert("docs", "e", "body", 0, "\udc00")
        assert r.get("docs", "d") == {"body": "café"}
        assert r.get("docs", "e") is None
        assert r.pending_count() == 1


def test_positions_are_code_points_around_every_kind_of_character(tmp_path: Path) -> None:
    """The issue's cases: each landed wrong when positions were UTF-8 bytes."""
    with Replica.open(tmp_path / "r.db") as r:
        r.text_insert("docs", "a", "body", 0, "aéb")
        r.text_insert("docs", "a", "body", 2, "!")
        r.text_insert("docs", "b", "body", 0, "café")
        r.text_insert("docs", "b", "body", 4, "!")
        r.text_insert("docs", "c", "body", 0, "hi 😀 there")
        r.text_delete("docs", "c", "body", 3, 1)
        r.text_insert("docs", "d", "body", 0, "𝔄n\u0308x")
        r.text_edits("docs", "d", "body", [(1, 2, "ñ"), (0, 0, ">"), (4, 0, "<")])
        assert [r.get("docs", k)["body"] for k in "abcd"] == [  # type: ignore[index]
            "aé!b",
            "café!",
            "hi  there",
            ">𝔄ñx<",
        ]
    with Replica.open(tmp_path / "r.db") as again:  # and so they read back from the file
        assert again.get("docs", "d") == {"body": ">𝔄ñx<"}
