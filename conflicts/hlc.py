"""Hybrid logical clocks (Kulkarni et al., 2014).

An `HLC` stamp is ``(wall_ms, counter, node)``: physical milliseconds, a logical
counter that orders events within (or behind) one millisecond, and the id of the
node that issued it. Stamps are totally ordered by that tuple, so two writes
never tie: their nodes differ.

``str(stamp)`` is sortable in the same order as the stamps themselves: the wall
time and the counter are fixed width, so string comparison falls through to the
node id exactly where tuple comparison does. It is the form stored in SQLite
and sent on the wire.

A `Clock` issues stamps for one node and absorbs stamps it receives. It never
issues a stamp at or below one it has issued or absorbed, even when the wall
clock goes backwards. A remote stamp further ahead of the local wall clock than
``max_drift_ms`` is refused (`ClockDriftError`): absorbing it would drag this
clock, and every clock this one talks to, into the future.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Final

import attrs

from quietsync.conflicts.errors import ClockDriftError

__all__ = ["HLC", "STAMP_PATTERN", "Clock", "validate_node_id", "wall_clock_ms"]

_WALL_DIGITS = 15
_COUNTER_DIGITS = 8
_NODE_START = _WALL_DIGITS + 1 + _COUNTER_DIGITS + 1
MAX_WALL_MS = 10**_WALL_DIGITS - 1
MAX_COUNTER = 16**_COUNTER_DIGITS - 1
_NODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Derived stamps (see `conflicts.resolvers`) extend a node id with "*" + digest;
# "*" is never part of an issued node id, so a derived stamp cannot collide with one.
_STAMP_NODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}(\*[0-9a-f]{1,32})*")
_STAMP_RE = re.compile(
    rf"(?P<wall>[0-9]{{{_WALL_DIGITS}}})-(?P<counter>[0-9a-f]{{{_COUNTER_DIGITS}}})"
    rf"-(?P<node>{_STAMP_NODE_RE.pattern})"
)
STAMP_PATTERN: Final = _STAMP_RE.pattern
"""The regular expression a stamp's text matches whole (the wire schema checks it too)."""


def wall_clock_ms() -> int:
    """Milliseconds since the epoch from the system clock."""
    return time.time_ns() // 1_000_000


def validate_node_id(node: str) -> str:
    """Return `node` if it is a valid node id (1-64 of ``A-Z a-z 0-9 _ . -``)."""
    if not isinstance(node, str) or not _NODE_RE.fullmatch(node):
        raise ValueError(f"invalid node id {node!r}: use 1-64 characters of A-Z a-z 0-9 _ . -")
    return node


def _check_stamp_node(node: str) -> None:
    if not isinstance(node, str) or not _STAMP_NODE_RE.fullmatch(node):
        raise ValueError(f"invalid node id {node!r} in a stamp")


@attrs.frozen(repr=False)
class HLC:
    """One hybrid logical clock stamp; ordered by ``(wall_ms, counter, node)``."""

    wall_ms: int = attrs.field()
    counter: int = attrs.field()
    node: str = attrs.field()
    # ``str(stamp)``, kept once made: every stamp of a push or a pull is parsed from
    # its text and written out again (into SQLite, onto the wire). Not part of the value.
    _text: str | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @wall_ms.validator
    def _check_wall(self, _: attrs.Attribute[int], value: int) -> None:
        if type(value) is not int or not 0 <= value <= MAX_WALL_MS:
            raise ValueError(f"HLC wall_ms must be an int in 0..{MAX_WALL_MS}, got {value!r}")

    @counter.validator
    def _check_counter(self, _: attrs.Attribute[int], value: int) -> None:
        if type(value) is not int or not 0 <= value <= MAX_COUNTER:
            raise ValueError(f"HLC counter must be an int in 0..{MAX_COUNTER}, got {value!r}")

    @node.validator
    def _check_node(self, _: attrs.Attribute[str], value: str) -> None:
        _check_stamp_node(value)

    @classmethod
    def minimal(cls, node: str) -> HLC:
        """The lowest stamp `node` can hold: any stamp a clock issues beats it.

        Used for placeholders that must lose to the first real write.
        """
        return cls(0, 0, node)

    @classmethod
    def parse(cls, text: str) -> HLC:
        """Parse the form produced by ``str(stamp)``; `ValueError` names bad input.

        The same text often comes many times in a row (every write of one
        `put_many` shares its stamp, so a push or a pull of 1,000 changes may
        carry one stamp 1,000 times): recent stamps are kept, parsed. They are
        immutable, so sharing one is safe.
        """
        if type(text) is str:
            return _parse_recent(text)
        return _parse(text)

    # Ordering by hand: attrs' generated comparisons build tuples through generator
    # expressions and made merge_field ~2.5x slower (benchmarks/merge_core.py).
    def __lt__(self, other: HLC) -> bool:
        return (self.wall_ms, self.counter, self.node) < (other.wall_ms, other.counter, other.node)

    def __le__(self, other: HLC) -> bool:
        return (self.wall_ms, self.counter, self.node) <= (other.wall_ms, other.counter, other.node)

    def __gt__(self, other: HLC) -> bool:
        return (self.wall_ms, self.counter, self.node) > (other.wall_ms, other.counter, other.node)

    def __ge__(self, other: HLC) -> bool:
        return (self.wall_ms, self.counter, self.node) >= (other.wall_ms, other.counter, other.node)

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = f"{self.wall_ms:0{_WALL_DIGITS}d}-{self.counter:0{_COUNTER_DIGITS}x}-{self.node}"
            _set_text(self, text)
        return text

    def __repr__(self) -> str:
        return f"HLC({self.wall_ms}, {self.counter}, {self.node!r})"


# The slots' own setters: a third faster than ``object.__setattr__`` by name, for `parse`
# (and the only way to fill in `_text` of a frozen stamp).
_set_wall_ms = HLC.__dict__["wall_ms"].__set__
_set_counter = HLC.__dict__["counter"].__set__
_set_node = HLC.__dict__["node"].__set__
_set_text = HLC.__dict__["_text"].__set__


def _parse(text: str) -> HLC:
    if not isinstance(text, str):
        raise ValueError(f"an HLC stamp must be a string, got {type(text).__name__}: {text!r}")
    match = _STAMP_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not an HLC stamp: {text!r} (expected "
            f"'<{_WALL_DIGITS} digits>-<{_COUNTER_DIGITS} hex digits>-<node>')"
        )
    # The pattern fixes every width and bounds every part: slice the parts out, skip
    # the validators (they doubled the cost of a parse, which every stamp of every
    # push and pull goes through), and keep `text`, exactly what ``str()`` would make.
    stamp = _checked(
        int(text[:_WALL_DIGITS]),
        int(text[_WALL_DIGITS + 1 : _NODE_START - 1], 16),
        text[_NODE_START:],
    )
    _set_text(stamp, text)
    return stamp


def _checked(wall_ms: int, counter: int, node: str) -> HLC:
    """An HLC from parts already known valid, without running the validators again."""
    stamp = object.__new__(HLC)
    _set_wall_ms(stamp, wall_ms)
    _set_counter(stamp, counter)
    _set_node(stamp, node)
    _set_text(stamp, None)
    return stamp


_parse_recent = functools.lru_cache(maxsize=1024)(_parse)
"""`_parse` of a str, remembering the last 1,024 stamps (a hit costs a twentieth of a parse)."""


class Clock:
    """Issues strictly increasing stamps for one node and absorbs remote ones.

    `wall` is injectable so tests can move time by hand (including backwards).
    """

    def __init__(
        self,
        node: str,
        *,
        max_drift_ms: int = 60_000,
        wall: Callable[[], int] = wall_clock_ms,
        last: HLC | None = None,
    ) -> None:
        self.node = validate_node_id(node)
        if max_drift_ms < 0:
            raise ValueError(f"max_drift_ms must be >= 0, got {max_drift_ms}")
        self.max_drift_ms = max_drift_ms
        self._wall = wall
        # The highest (wall_ms, counter) issued or absorbed so far.
        self._wall_ms = last.wall_ms if last else 0
        self._counter = last.counter if last else 0

    @property
    def last(self) -> HLC:
        """The highest point this clock has issued or absorbed (as this node's stamp)."""
        return _checked(self._wall_ms, self._counter, self.node)  # node checked at init

    def now(self) -> HLC:
        """A stamp strictly greater than every stamp issued or absorbed so far."""
        wall = self._wall()
        if wall > self._wall_ms:
            self._wall_ms, self._counter = wall, 0
        elif self._counter < MAX_COUNTER:
            self._counter += 1
        else:
            # Counter exhausted within one logical millisecond: borrow the next one.
            self._wall_ms, self._counter = self._wall_ms + 1, 0
        return _checked(self._wall_ms, self._counter, self.node)  # node checked at init

    def check_drift(self, remote: HLC) -> None:
        """Raise `ClockDriftError` if `remote` is too far ahead; change nothing."""
        ahead = remote.wall_ms - self._wall()
        if ahead > self.max_drift_ms:
            raise ClockDriftError(remote, ahead, self.max_drift_ms)

    def drift_bound(self) -> int:
        """The highest `wall_ms` a remote stamp may carry right now.

        A stamp at or below it passes `check_drift` as long as the wall clock
        does not go back: who checks many stamps at once (a push of 1,000) reads
        the wall clock once and calls `check_drift` only for stamps above it.
        """
        return self._wall() + self.max_drift_ms

    def observe(self, remote: HLC) -> None:
        """Absorb a remote stamp so that every later `now()` is greater than it.

        Raises `ClockDriftError` (and leaves the clock unchanged) when `remote`
        is more than `max_drift_ms` ahead of the local wall clock.
        """
        self.check_drift(remote)
        if (remote.wall_ms, remote.counter) > (self._wall_ms, self._counter):
            self._wall_ms, self._counter = remote.wall_ms, remote.counter
