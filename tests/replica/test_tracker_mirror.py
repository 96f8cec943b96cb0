"""The tracker's persistence rules (`quietsync.replica.jobs.mirror`), through a real replica file.

Events are built the way the server builds them: stamped by a server clock,
content flushes carrying the whole content so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC, Clock, wall_clock_ms
from quietsync.protocol import Change
from quietsync.protocol.jobs import JOB_FIELDS, MESSAGES, JobEvent
from quietsync.replica import JobGapError, Replica
from quietsync.replica.jobs.mirror import JobMirror, JobState
from quietsync.replica.replica import sync_port
from quietsync.replica.subscriptions import ChangeEvent
from quietsync.replica.sync_port import SyncPort


class JobServer:
    """Events of one job as the server emits them (one stamp per flush)."""

    def __init__(self, job_id: str = "j1", clock: Clock | None = None) -> None:
        self.job_id = job_id
        self.clock = clock or Clock("server")
        self.content = ""

    def start(self) -> JobEvent:
        return JobEvent("snapshot", self.job_id, stamp=self.clock.now())

    def flush(self, text: str) -> JobEvent:
        offset, self.content = len(self.content), self.content + text
        return self._event("delta", offset, text)

    def end(self, status: str = "complete", error: str | None = None) -> JobEvent:
        return self._event("status", len(self.content), "", status, error)

    def snapshot(self, offset: int) -> JobEvent:
        return self._event("snapshot", offset, self.content[offset:])

    def _event(
        self, kind: str, offset: int, text: str, status: str = "streaming", error: str | None = None
    ) -> JobEvent:
        return JobEvent(
            kind,  # type: ignore[arg-type]
            self.job_id,
            status,  # type: ignore[arg-type]
            offset=offset,
            text=text,
            content_length=len(self.content),
            error=error,
            stamp=self.clock.now(),
        )


def fields(replica: Replica, message_id: str = "m1") -> dict[str, object]:
    record = replica.get(MESSAGES, message_id) or {}
    return {f: record.get(f) for f in sorted(JOB_FIELDS)}


def apply(mirror: JobMirror, state: JobState, *events: JobEvent) -> str:
    appended = "".join(state.apply(e) for e in events)
    mirror.mark(state)
    return appended


def test_placeholder_shows_streaming_and_any_server_stamp_beats_it(replica: Replica) -> None:
    mirror = JobMirror(replica)
    mirror.placeholder("m1")
    assert fields(replica)["pending"] is True and fields(replica)["content"] == ""
    assert replica.pending_count() == 0  # mirror writes are never queued for push
    job = JobServer()
    state = JobState("j1", "t1", "m1")
    mirror.load_bases(state)
    apply(mirror, state, job.start())
    mirror.flush()
    assert fields(replica) == {
        "content": "",
        "error": None,
        "job_id": "j1",
        "job_status": "streaming",
        "pending": True,
    }
    held = sync_port(replica).field_state(MESSAGES, "m1", "job_status")
    assert held is not None and held.write.stamp.node == "server"


def test_flush_writes_only_the_latest_state_with_the_server_stamp(replica: Replica) -> None:
    mirror, job, state = JobMirror(replica), JobServer(), JobState("j1", "t1", "m1")
    appended = apply(mirror, state, job.start(), job.flush("Hel"), job.flush("lo"))
    last = state.stamp
    assert appended == "Hello"
    assert replica.get(MESSAGES, "m1") is None  # nothing written before the flush
    mirror.flush()
    held = sync_port(replica).field_state(MESSAGES, "m1", "content")
    assert held is not None and held.write.value == "Hello" and held.write.stamp == last
    assert not mirror.has_news and replica.pending_count() == 0


def test_one_transaction_for_every_job_with_news(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = JobMirror(replica)
    jobs = [(JobServer(f"j{i}"), JobState(f"j{i}", "t1", f"m{i}")) for i in range(5)]
    for job, state in jobs:
        apply(mirror, state, job.start(), job.flush(f"reply {state.job_id}"))
    commits: list[str] = []
    replica.subscribe(MESSAGES, lambda event: commits.append(event.key))
    calls = 0
    original = SyncPort.apply_remote

    def counting(port: SyncPort, *args: Any, **kwargs: Any) -> list[ChangeEvent]:
        nonlocal calls
        calls += 1
        return original(port, *args, **kwargs)

    monkeypatch.setattr(SyncPort, "apply_remote", counting)
    mirror.flush()
    assert calls == 1 and sorted(commits) == [f"m{i}" for i in range(5)]
    assert all(fields(replica, f"m{i}")["content"] == f"reply j{i}" for i in range(5))


SHARED = "s:aaaaaaaaaaaaaaaaaaaaaaaaaa"


def test_a_job_of_a_shared_space_is_mirrored_into_that_space_only(replica: Replica) -> None:
    mirror, job = JobMirror(replica), JobServer()
    mirror.placeholder("m1", SHARED)
    assert replica.space(SHARED).get(MESSAGES, "m1") == {
        "content": "",
        "pending": True,
        "job_status": "streaming",
    }
    state = JobState("j1", "t1", "m1", space=SHARED)
    mirror.load_bases(state)
    apply(mirror, state, job.start(), job.flush("Grüße 🚀"))
    mirror.flush()
    apply(mirror, state, job.end())
    mirror.flush()
    shared = replica.space(SHARED).get(MESSAGES, "m1") or {}
    assert (shared["content"], shared["job_status"]) == ("Grüße 🚀", "complete")
    assert replica.get(MESSAGES, "m1") is None and replica.pending_count() == 0
    held = sync_port(replica, SHARED).field_state(MESSAGES, "m1", "content")
    assert held is not None and held.write.stamp == state.stamp


def test_one_flush_is_one_transaction_across_spaces(replica: Replica) -> None:
    """Each space's subscriber, called after the commit, already sees the other's job."""
    mirror = JobMirror(replica)
    states = [JobState("j1", "t1", "m1"), JobState("j2", "t1", "m2", space=SHARED)]
    for state in states:
        apply(mirror, state, JobServer(state.job_id).start())
    pairs = list(zip([replica, replica.space(SHARED)], states, strict=True))
    seen: list[bool] = []
    for view, _ in pairs:
        view.subscribe(
            MESSAGES, lambda _: seen.append(all(v.get(MESSAGES, s.message_id) for v, s in pairs))
        )
    mirror.flush()
    assert seen == [True, True]


def test_the_spaces_a_job_may_be_in_are_the_private_one_then_those_held(
    replica: Replica,
) -> None:
    mirror = JobMirror(replica)
    assert mirror.spaces() == [None]
    replica.space("s:zz").put("notes", "k", {"v": 1})
    mirror.placeholder("m1", SHARED)
    assert mirror.spaces() == [None, SHARED, "s:zz"]


def test_the_later_synced_changes_are_duplicates_or_older(replica: Replica) -> None:
    """What sync delivers afterwards never changes what the mirror wrote."""
    mirror, job, state = JobMirror(replica), JobServer(), JobState("j1", "t1", "m1")
    events = [job.start(), job.flush("a"), job.flush("b"), job.end()]
    apply(mirror, state, *events)
    mirror.flush()
    before = fields(replica)
    log = [
        Change(f"s{n}", MESSAGES, "m1", "content", "lww", e.stamp, None, job.content[: e.offset])
        for n, e in enumerate(events[1:3])
        if e.stamp is not None
    ]
    assert sync_port(replica).apply_remote(log) == []
    assert fields(replica) == before


def test_status_end_writes_all_job_fields(replica: Replica) -> None:
    mirror, job, state = JobMirror(replica), JobServer(), JobState("j1", "t1", "m1")
    apply(mirror, state, job.start(), job.flush("partial"), job.end("error", "provider failed"))
    mirror.flush()
    assert fields(replica) == {
        "content": "partial",
        "error": "provider failed",
        "job_id": "j1",
        "job_status": "error",
        "pending": False,
    }
    assert state.final and state.final_event().stamp == state.stamp


def test_resuming_from_an_offset_appends_only_what_is_new(replica: Replica) -> None:
    job = JobServer()
    job.start()
    job.flush("Hello, ")
    job.flush("world")
    state = JobState("j1", "t1", "m1", content="Hello, ")
    assert state.apply(job.snapshot(len("Hello, "))) == "world"
    assert state.apply(job.snapshot(0)) == ""  # a re-sent snapshot duplicates nothing
    assert state.content == "Hello, world"


def test_an_event_past_our_content_is_a_gap(replica: Replica) -> None:
    job = JobServer()
    job.flush("abc")
    state = JobState("j1", "t1", "m1")
    with pytest.raises(JobGapError):
        state.apply(job.flush("def"))
    assert state.content == "" and state.stamp is None


def test_stale_events_and_keepalives_change_nothing() -> None:
    job = JobServer()
    old = job.flush("a")
    new = job.flush("b")
    state = JobState("j1", "t1", "m1")
    assert state.apply(old) + state.apply(new) == "ab"
    assert state.apply(old) == "" and state.stamp == new.stamp
    assert state.apply(JobEvent("keepalive", "j1")) == "" and not state.dirty - {"content"}


def test_local_error_ends_the_message_and_is_never_pushed(replica: Replica) -> None:
    mirror = JobMirror(replica)
    mirror.placeholder("m1")
    state = JobState("j1", "t1", "m1")
    mirror.write_local_error(state, "the server no longer knows this job")
    assert fields(replica)["job_status"] == "error" and fields(replica)["pending"] is False
    assert replica.pending_count() == 0


def test_a_refused_job_write_does_not_block_the_others(tmp_path: Path) -> None:
    """A stamp too far ahead is refused for its job only; the rest is persisted."""
    with Replica.open(tmp_path / "r.db", node_id="local", max_drift_ms=1_000) as replica:
        mirror = JobMirror(replica)
        good, bad = JobServer("j1"), JobServer("j2", Clock("server", wall=lambda: 10**13))
        s1, s2 = JobState("j1", "t1", "m1"), JobState("j2", "t1", "m2")
        apply(mirror, s1, good.start(), good.flush("fine"))
        apply(mirror, s2, bad.start(), bad.flush("from the future"))
        mirror.flush()
        assert fields(replica, "m1")["content"] == "fine"
        assert replica.get(MESSAGES, "m2") is None
        apply(mirror, s2, bad.flush(" again"))  # alone, too: logged, never raised
        mirror.flush()
        assert replica.get(MESSAGES, "m2") is None and not mirror.has_news


def test_replica_clock_can_be_skewed(tmp_path: Path) -> None:
    skew = 30_000
    with Replica.open(tmp_path / "r.db", wall=lambda: wall_clock_ms() + skew) as replica:
        replica.put("items", "k", {"v": 1})
        held = sync_port(replica).field_state("items", "k", "v")
        assert held is not None and held.write.stamp.wall_ms >= wall_clock_ms() + skew - 1_000


@given(st.lists(st.text(max_size=5), min_size=1, max_size=12), st.data())
def test_content_never_goes_backwards_under_any_delivery(
    chunks: list[str], data: st.DataObject
) -> None:
    """Events re-delivered, dropped (then caught up by a snapshot) or stale: content only grows."""
    job = JobServer()
    events = [job.flush(c) for c in chunks]
    delivered = data.draw(st.lists(st.sampled_from(events), max_size=20))
    state = JobState("j1", "t1", "m1")
    seen = [""]
    for event in [*delivered, job.snapshot(0)]:
        try:
            state.apply(event)
        except JobGapError:
            continue
        assert state.content.startswith(seen[-1])
        seen.append(state.content)
    assert state.content == job.content
    assert state.stamp is not None and state.stamp >= HLC.minimal("server")
