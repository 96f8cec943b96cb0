"""`TextChunks` against a plain ``str``, with chunks small enough to split and merge often."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import text_chunks
from quietsync.conflicts.text_chunks import TextChunks
from tests.conflicts.strategies import unicode_text

EDITS = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 12), st.one_of(st.just(""), unicode_text)),
    max_size=40,
)


@pytest.fixture(autouse=True, scope="module")
def _tiny_chunks() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_chunks, "CHUNK", 4)
        yield


@given(st.lists(unicode_text, max_size=12).map("".join), EDITS)
def test_edits_and_offsets_match_a_plain_str(start: str, edits: list[tuple[int, int, str]]) -> None:
    chunks, model = TextChunks(start), start
    for at, count, insert in edits:
        index = at % (len(model) + 1)
        count = min(count, len(model) - index)
        chunks.replace(index, count, insert)
        model = model[:index] + insert + model[index + count :]
        assert len(chunks) == len(model)
        assert str(chunks) == model
        for probe in {0, index, index + len(insert), len(model)}:
            assert chunks.utf8_offset(probe) == len(model[:probe].encode())
        assert all(len(c) <= 2 * text_chunks.CHUNK for c in chunks._chunks)


def test_deleting_everything_across_chunks_leaves_an_empty_text() -> None:
    chunks = TextChunks("😀é" * 20)
    chunks.replace(3, 37, "")
    chunks.replace(0, 3, "")
    assert (str(chunks), len(chunks), chunks.utf8_offset(0)) == ("", 0, 0)
    chunks.replace(0, 0, "𝔄")
    assert (str(chunks), chunks.utf8_offset(1)) == ("𝔄", 4)


def test_a_long_text_is_chunked_and_an_edit_rebuilds_only_its_chunk() -> None:
    text = "ab😀" * 100
    chunks = TextChunks(text)
    before = list(chunks._chunks)
    chunks.replace(150, 1, "中")
    changed = [n for n, (a, b) in enumerate(zip(before, chunks._chunks, strict=True)) if a != b]
    assert len(before) > 10 and len(changed) == 1
    assert str(chunks) == text[:150] + "中" + text[151:]
