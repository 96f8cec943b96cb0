"""The merge laws of `conflicts.lww`, one test (or more) per numbered law."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, FieldRef, FieldWrite, Merge, Outcome, Resolvers, merge_field
from quietsync.conflicts.lww import overwrites

from .strategies import distinct_writes

REF = FieldRef("messages", "m1", "content")


def fold(writes: list[FieldWrite], **kwargs: object) -> tuple[FieldWrite | None, list[Merge]]:
    state: FieldWrite | None = None
    merges = []
    for write in writes:
        merge = merge_field(state, write, ref=REF, **kwargs)  # type: ignore[arg-type]
        state = merge.state
        merges.append(merge)
    return state, merges


def stamp(wall: int, node: str, counter: int = 0) -> HLC:
    return HLC(wall, counter, node)


# Law 1: equal stamps are one write.
@given(distinct_writes(min_size=1, max_size=1))
def test_law1_duplicate_delivery_is_a_no_op(writes: list[FieldWrite]) -> None:
    (write,) = writes
    merge = merge_field(write, write, ref=REF)
    assert merge.outcome is Outcome.DUPLICATE
    assert merge.state == write
    assert merge.conflict is None and not merge.suppressed and not merge.changed


# Law 2: the highest stamp wins, in any order, with duplicates.
@given(st.data(), distinct_writes())
def test_law2_any_order_with_duplicates_converges_to_highest_stamp(
    data: st.DataObject, writes: list[FieldWrite]
) -> None:
    deliveries = data.draw(
        st.lists(st.sampled_from(writes), max_size=4).map(lambda extra: writes + extra)
    )
    order_a = data.draw(st.permutations(deliveries))
    order_b = data.draw(st.permutations(deliveries))
    state_a, _ = fold(order_a)
    state_b, _ = fold(order_b)
    best = max(writes, key=lambda w: w.stamp)
    assert state_a is not None and state_b is not None
    assert (
        (state_a.value, state_a.stamp) == (state_b.value, state_b.stamp) == (best.value, best.stamp)
    )


@given(st.data(), distinct_writes(min_size=2))
def test_law2_merging_is_associative_over_split_deliveries(
    data: st.DataObject, writes: list[FieldWrite]
) -> None:
    # Two replicas each merge part of the writes, then exchange their states.
    split = data.draw(st.integers(1, len(writes) - 1))
    left, _ = fold(writes[:split])
    right, _ = fold(writes[split:])
    assert left is not None and right is not None
    combined_lr, _ = fold([left, right])
    combined_rl, _ = fold([right, left])
    everything, _ = fold(writes)
    assert combined_lr is not None and combined_rl is not None and everything is not None
    assert combined_lr.stamp == combined_rl.stamp == everything.stamp
    assert combined_lr.value == combined_rl.value == everything.value


# Law 3: a conflict is a winner that did not see the loser (and different content).
def test_law3_concurrent_divergent_writes_conflict_whichever_arrives_first() -> None:
    older = FieldWrite("from a", stamp(100, "a"), base=None)
    newer = FieldWrite("from b", stamp(200, "b"), base=None)
    for first, second in ((older, newer), (newer, older)):
        merge = merge_field(first, second, ref=REF, detected_by="server")
        assert merge.value == "from b"
        assert merge.conflict is not None
        assert merge.conflict.winner.value == "from b"
        assert merge.conflict.loser.value == "from a"
        assert merge.conflict.loser.node == "a"
        assert (merge.conflict.collection, merge.conflict.key, merge.conflict.field) == (
            "messages",
            "m1",
            "content",
        )
        assert merge.conflict.detected_by == "server"


def test_law3_a_write_that_saw_the_current_value_is_no_conflict() -> None:
    first = FieldWrite("v1", stamp(100, "a"))
    edit = FieldWrite("v2", stamp(200, "b"), base=first.stamp)
    for current, incoming in ((first, edit), (edit, first)):
        merge = merge_field(current, incoming, ref=REF)
        assert merge.value == "v2"
        assert merge.conflict is None and not merge.suppressed


def test_law3_a_writer_that_saw_something_newer_superseded_the_loser() -> None:
    # b's writer had seen a stamp newer than a's write: a's write is history, not news.
    stale = FieldWrite("v1", stamp(100, "a"))
    newer_seen = stamp(150, "c")
    edit = FieldWrite("v3", stamp(200, "b"), base=newer_seen)
    assert merge_field(stale, edit, ref=REF).conflict is None
    assert merge_field(edit, stale, ref=REF).conflict is None


# Law 4: identical content is never a conflict, only counted.
@given(st.data(), distinct_writes(min_size=2))
def test_law4_identical_concurrent_writes_are_suppressed_in_every_order(
    data: st.DataObject, writes: list[FieldWrite]
) -> None:
    same = [FieldWrite({"text": "hello", "n": 1}, w.stamp, None) for w in writes]
    same[0] = FieldWrite({"n": 1.0, "text": "hello"}, same[0].stamp)  # key order and 1 == 1.0
    order = data.draw(st.permutations(same))
    _, merges = fold(order)
    assert [m.conflict for m in merges] == [None] * len(merges)
    assert sum(m.suppressed for m in merges) == len(writes) - 1


def test_law4_switching_suppression_off_reports_identical_collisions() -> None:
    a = FieldWrite("same", stamp(100, "a"))
    b = FieldWrite("same", stamp(200, "b"))
    merge = merge_field(a, b, ref=REF, suppress_identical=False)
    assert merge.conflict is not None and not merge.suppressed
    assert merge.conflict.winner.value == merge.conflict.loser.value == "same"


# Law 5: each losing write is reported exactly once, with the same winner everywhere.
@given(st.data(), distinct_writes(min_size=2))
def test_law5_divergent_concurrent_writes_report_each_loser_once(
    data: st.DataObject, writes: list[FieldWrite]
) -> None:
    divergent = [FieldWrite(f"value-{i}", w.stamp, None) for i, w in enumerate(writes)]
    winner = max(divergent, key=lambda w: w.stamp)
    for _ in range(2):
        order = data.draw(st.permutations(divergent))
        state, merges = fold(order)
        assert state == winner
        losers = [m.conflict.loser.stamp for m in merges if m.conflict is not None]
        assert sorted(losers) == sorted(w.stamp for w in divergent if w is not winner)
        assert not any(m.suppressed for m in merges)


def test_law5_tombstones_merge_like_any_value() -> None:
    put = FieldWrite(False, stamp(100, "a"))
    delete = FieldWrite(True, stamp(200, "b"), base=put.stamp)
    late_put = FieldWrite(False, stamp(150, "c"))
    state, _ = fold([delete, late_put, put])
    assert state == delete


# Law 6: resolvers are deterministic.
def test_law6_resolver_gives_the_same_value_and_stamp_in_both_orders() -> None:
    resolvers = Resolvers()

    @resolvers.resolver("carts", "items")
    def union(local: list[str], remote: list[str]) -> list[str]:
        return sorted(set(local) | set(remote))

    a = FieldWrite(["apple"], stamp(100, "a"))
    b = FieldWrite(["pear"], stamp(200, "b"))
    resolver = resolvers.get("carts", "items")
    ab = merge_field(a, b, ref=REF, resolver=resolver)
    ba = merge_field(b, a, ref=REF, resolver=resolver)
    assert ab.outcome is ba.outcome is Outcome.RESOLVED
    assert ab.state == ba.state
    assert ab.value == ["apple", "pear"]
    assert ab.stamp > b.stamp > a.stamp
    assert ab.conflict is not None and ab.conflict.winner.value == ["apple", "pear"]
    # A node that later sees the plain winner keeps the resolved value: it is newer.
    assert merge_field(ab.state, b, ref=REF).state == ab.state


def test_law6_resolver_is_not_called_without_a_real_conflict() -> None:
    calls = []

    def resolver(local: object, remote: object) -> object:
        calls.append((local, remote))
        return remote

    a = FieldWrite("same", stamp(100, "a"))
    b = FieldWrite("same", stamp(200, "b"))
    seen = FieldWrite("other", stamp(300, "c"), base=b.stamp)
    assert merge_field(a, b, ref=REF, resolver=resolver).suppressed
    assert merge_field(b, seen, ref=REF, resolver=resolver).conflict is None
    assert calls == []


def test_resolver_registry_prefers_exact_field_over_collection_wildcard() -> None:
    resolvers = Resolvers()
    resolvers.register("docs", "*", lambda local, remote: "any")
    resolvers.register("docs", "title", lambda local, remote: "exact")
    exact, wildcard = resolvers.get("docs", "title"), resolvers.get("docs", "body")
    assert exact is not None and exact(1, 2) == "exact"
    assert wildcard is not None and wildcard(1, 2) == "any"
    assert resolvers.get("other", "title") is None
    assert len(resolvers) == 2


def test_first_write_to_a_field_is_applied() -> None:
    write = FieldWrite("v", stamp(1, "a"))
    merge = merge_field(None, write)
    assert merge.outcome is Outcome.APPLIED and merge.changed and merge.state == write


# The fast path: `overwrites` is exactly "merge_field returns the incoming write, applied".
@given(distinct_writes(min_size=1, max_size=2), st.booleans(), st.booleans())
def test_overwrites_holds_exactly_when_merge_field_plainly_applies(
    writes: list[FieldWrite], resolve: bool, suppress: bool
) -> None:
    *before, incoming = writes
    current = before[0] if before else None
    merge = merge_field(
        current,
        incoming,
        ref=REF,
        resolver=(lambda older, newer: [older, newer]) if resolve else None,
        suppress_identical=suppress,
        detected_by="server",
    )
    plain = merge == Merge(incoming, Outcome.APPLIED)
    current_stamp = None if current is None else current.stamp
    assert overwrites(current_stamp, incoming.stamp, incoming.base) == plain
