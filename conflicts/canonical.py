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
import json.encoder
from collections.abc import Callable
from typing import Any

__all__ = ["canonical_equal", "canonical_json", "encode_normalized", "normalize"]

_SETTINGS = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_encoder() -> Callable[[Any], str]:
    """`json.JSONEncoder(**_SETTINGS).encode`, minus building a C encoder on every call.

    `JSONEncoder.encode` builds its C encoder per call, which is half the cost
    of encoding a small record; this one is built once. It skips the circular
    reference check (``markers=None``): `normalize` walks every value first,
    so a cycle is a `RecursionError` before it gets here.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # no C accelerator (e.g. PyPy)
        return json.JSONEncoder(**_SETTINGS).encode  # type: ignore[arg-type]
    encoder = c_make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    return lambda value: "".join(encoder(value, 0))


_quote = json.encoder.encode_basestring

encode_normalized = _make_encoder()
"""The canonical text of a value that is already `normalize`d (e.g. decoded from canonical text)."""


_PLAIN = frozenset({str, int, bool, type(None)})  # types normalize returns as they are


def normalize(value: Any) -> Any:
    """Return `value` with integral floats turned into ints, recursively.

    A dict of plain scalars (the common record) is returned as it is, uncopied.
    """
    if type(value) is dict and _PLAIN.issuperset(map(type, value.values())):
        for k in value:
            if type(k) is not str:
                raise TypeError(f"JSON object keys must be strings, got {k!r}")
        return value
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
    kind = type(value)
    if kind is int:  # the common scalars are written exactly as the encoder writes them
        return int.__repr__(value)
    text = _quote(value) if kind is str else encode_normalized(normalize(value))
    if text.isascii():
        return text
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
