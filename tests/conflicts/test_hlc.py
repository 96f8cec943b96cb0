"""HLC stamps and the Clock: total order, sortable strings, drift refusal."""

from __future__ import annotations

import itertools

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Clock, ClockDriftError
from quietsync.conflicts.hlc import MAX_COUNTER

from .strategies import stamps


class ManualWall:
    """A wall clock moved by hand."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@given(stamps, stamps)
def test_string_form_sorts_like_the_stamps(a: HLC, b: HLC) -> None:
    assert (a < b) == (str(a) < str(b))
    assert (a == b) == (str(a) == str(b))


@given(stamps)
def test_parse_round_trips(stamp: HLC) -> None:
    assert HLC.parse(str(stamp)) == stamp


@given(stamps)
def test_a_parsed_stamp_is_the_same_value_and_text_as_a_built_one(stamp: HLC) -> None:
    built = HLC(stamp.wall_ms, stamp.counter, stamp.node)  # text not made yet
    parsed = HLC.parse(str(stamp))  # text kept from parsing
    assert (parsed, hash(parsed), str(parsed)) == (built, hash(built), str(built))
    assert str(attrs.evolve(parsed, counter=parsed.counter + 1)) > str(parsed)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "nonsense",
        "000000000000001-00000000",
        "1-0-node",
        "000000000000001-zzzzzzzz-n",
        "000000000000001-00000000-bad node",
        "000000000000001-00000000-" + "x" * 65,
    ],
)
def test_parse_errors_name_the_bad_input(bad: str) -> None:
    with pytest.raises(ValueError, match="stamp") as info:
        HLC.parse(bad)
    assert repr(bad)[:20] in str(info.value) or "node id" in str(info.value)


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        HLC.parse(12)  # type: ignore[arg-type]


def test_stamp_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="wall_ms"):
        HLC(-1, 0, "a")
    with pytest.raises(ValueError, match="counter"):
        HLC(0, MAX_COUNTER + 1, "a")
    with pytest.raises(ValueError, match="node id"):
        HLC(0, 0, "")


def test_now_is_strictly_increasing_when_the_wall_clock_goes_backwards() -> None:
    wall = ManualWall(10_000)
    clock = Clock("a", wall=wall)
    issued = [clock.now()]
    for ms in (10_000, 9_000, 5_000, 10_000, 10_001, 3):
        wall.ms = ms
        issued.append(clock.now())
    assert issued == sorted(issued)
    assert len(set(issued)) == len(issued)
    assert issued[-2] == HLC(10_001, 0, "a")


def test_counter_exhaustion_borrows_the_next_millisecond() -> None:
    clock = Clock("a", wall=ManualWall(50), last=HLC(50, MAX_COUNTER, "a"))
    assert clock.now() == HLC(51, 0, "a")


def test_observe_makes_later_stamps_greater_than_the_remote_one() -> None:
    wall = ManualWall(1_000)
    clock = Clock("a", wall=wall)
    remote = HLC(30_000, 7, "b")  # 29 s ahead: within the default bound
    clock.observe(remote)
    assert clock.now() > remote
    clock.observe(HLC(5, 0, "c"))  # an old stamp changes nothing
    assert clock.now() == HLC(30_000, 9, "a")


def test_a_stamp_beyond_the_drift_bound_is_refused_and_changes_nothing() -> None:
    wall = ManualWall(1_000)
    clock = Clock("a", max_drift_ms=60_000, wall=wall)
    before = clock.last
    with pytest.raises(ClockDriftError) as info:
        clock.observe(HLC(1_000 + 60_001, 0, "evil"))
    assert info.value.ahead_ms == 60_001
    assert "60001 ms ahead" in str(info.value)
    assert clock.last == before
    assert clock.now() == HLC(1_000, 0, "a")


def test_exactly_at_the_drift_bound_is_accepted() -> None:
    clock = Clock("a", max_drift_ms=100, wall=ManualWall(1_000))
    clock.observe(HLC(1_100, 0, "b"))
    assert clock.now() > HLC(1_100, 0, "b")


def test_drift_bound_is_the_last_wall_time_check_drift_accepts() -> None:
    wall = ManualWall(1_000)
    clock = Clock("a", max_drift_ms=100, wall=wall)
    assert clock.drift_bound() == 1_100
    clock.check_drift(HLC(1_100, 5, "b"))
    with pytest.raises(ClockDriftError):
        clock.check_drift(HLC(1_101, 0, "b"))
    wall.ms = 2_000
    assert clock.drift_bound() == 2_100


def test_clock_refuses_bad_node_ids_and_negative_drift() -> None:
    with pytest.raises(ValueError, match="node id"):
        Clock("has space")
    with pytest.raises(ValueError, match="node id"):
        Clock("derived*abc")  # "*" is reserved for resolver stamps
    with pytest.raises(ValueError, match="max_drift_ms"):
        Clock("a", max_drift_ms=-1)


def test_minimal_stamp_loses_to_anything_issued() -> None:
    clock = Clock("a", wall=ManualWall(0))
    assert HLC.minimal("z") < clock.now()


@given(st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_any_wall_sequence_gives_strictly_increasing_stamps(walls: list[int]) -> None:
    wall = ManualWall(0)
    clock = Clock("n", wall=wall)
    issued = []
    for ms in walls:
        wall.ms = ms
        issued.append(clock.now())
    assert all(a < b for a, b in itertools.pairwise(issued))


def test_a_stamp_parsed_again_is_shared_and_bad_text_fails_every_time() -> None:
    text = str(HLC(1, 2, "n"))
    assert HLC.parse(text) is HLC.parse(text)  # parsed once: stamps are immutable
    assert HLC.parse(text) == HLC(1, 2, "n")
    assert str(HLC.parse(text)) == text
    for _ in range(2):  # a failure is never remembered as a stamp
        with pytest.raises(ValueError, match="not an HLC stamp"):
            HLC.parse("nonsense")

    class Text(str):
        pass

    assert HLC.parse(Text(text)) == HLC(1, 2, "n")
