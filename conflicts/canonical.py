"""Canonical JSON: the one notion of "the same content" used everywhere.

Two values are the same content when their canonical JSON text is equal:

* dict key order is irrelevant (keys are sorted);
* numbers compare by mathematical value across int and float, so ``1 == 1.0``
  and ``{"n": 2} == {"n": 2.0}``: JSON has one number type and a JavaScript
  peer cannot tell them apart, so treating them as different would report
  conflicts nobody can see;
* booleans are *not* numbers: ``True != 1`` (Python says otherwise; JSON does not);
* tuples are lists, as `json` would encode them;
* NaN and infinities are not JSON and are refused (`ValueError`), and so is text
  holding a lone surrogate (``"\\ud800"``: legal as a JSON escape, but not
  encodable as UTF-8, so no store can hold it); any value `json` cannot encode
  is a `TypeError`, and so is a dict key that is not a string.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_equal", "canonical_json", "normalize"]

_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def normalize(value: Any) -> Any:
    """Return `value` with integral floats turned into ints, recursively."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"JSON object keys must be strings, got {k!r}")
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """The canonical JSON text of `value` (see the module docstring)."""
    text = _encode(normalize(value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text with a lone surrogate is not storable JSON: {exc.reason}") from None
    return text


def canonical_equal(a: Any, b: Any) -> bool:
    """True when `a` and `b` are the same content under canonical JSON."""
    if type(a) is type(b) and isinstance(a, str | int | bool | type(None)):
        return a == b  # fast path for the common scalar case
    return canonical_json(a) == canonical_json(b)
