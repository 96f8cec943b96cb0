"""Hypothesis strategies shared by the merge-core tests."""

from __future__ import annotations

from hypothesis import strategies as st

from quietsync.conflicts import HLC, FieldWrite

NODES = ("a", "b", "c", "server")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

stamps = st.builds(
    HLC,
    wall_ms=st.integers(0, 2_000),
    counter=st.integers(0, 3),
    node=st.sampled_from(NODES),
)


@st.composite
def distinct_writes(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 6) -> list[FieldWrite]:
    """Writes with pairwise distinct stamps and arbitrary bases (as real clocks produce)."""
    chosen = draw(st.lists(stamps, min_size=min_size, max_size=max_size, unique=True))
    values = st.sampled_from(["x", "y", 1, {"k": [1, 2]}, None])
    return [
        FieldWrite(draw(values), stamp, draw(st.none() | st.sampled_from(chosen)))
        for stamp in chosen
    ]


# Text as users type it: accents, emoji (with joiners and flags), astral-plane
# letters, combining marks, CJK, and any code point that is not a surrogate.
TEXT_SAMPLES = ["é", "😀", "𝔄", "n\u0308", "中文", "a", "🏳️‍🌈", "\u0301", " "]
characters = st.one_of(st.sampled_from(TEXT_SAMPLES), st.characters(blacklist_categories=("Cs",)))
unicode_text = st.lists(characters, min_size=1, max_size=4).map("".join)
