"""Canonical JSON equality: what counts as 'the same content'."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import canonical_equal, canonical_json

from .strategies import json_values


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}),
        (1, 1.0),
        ({"n": [2.0, {"x": 0.0}]}, {"n": [2, {"x": 0}]}),
        ((1, "x"), [1, "x"]),
        ("héllo", "héllo"),
        (None, None),
    ],
)
def test_equal_content(a: Any, b: Any) -> None:
    assert canonical_equal(a, b)
    assert canonical_json(a) == canonical_json(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (False, 0),
        (1, 1.5),
        ("1", 1),
        (None, False),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 2}),
    ],
)
def test_different_content(a: Any, b: Any) -> None:
    assert not canonical_equal(a, b)


@given(json_values)
def test_equality_is_reflexive_and_survives_key_reordering(value: Any) -> None:
    assert canonical_equal(value, value)
    if isinstance(value, dict):
        assert canonical_equal(value, dict(reversed(list(value.items()))))


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": [math.nan]}])
def test_non_json_numbers_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(bad)


def test_non_json_values_are_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"when": object()})
    with pytest.raises(TypeError, match="keys must be strings"):
        canonical_json({1: "x"})


@pytest.mark.parametrize("bad", ["\ud800", ["ok", {"k": "x\udfff"}]])
def test_lone_surrogates_are_refused(bad: Any) -> None:
    # Legal as a JSON escape and as a Python str, but no UTF-8 store can hold it.
    with pytest.raises(ValueError, match="lone surrogate"):
        canonical_json(bad)


@given(st.integers() | st.text() | st.booleans())
def test_scalars_are_written_as_the_encoder_writes_them_inside_a_list(value: Any) -> None:
    # ints and strs take a shortcut at the top level; inside a list the encoder writes them
    assert canonical_json([value]) == f"[{canonical_json(value)}]"
