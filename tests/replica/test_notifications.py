"""`Notifications`: listing, marking read, muting; job notifications are deterministic."""

from __future__ import annotations

import pytest

from quietsync.conflicts import Clock
from quietsync.protocol.jobs import MUTED_THREADS, NOTIFICATIONS, JobEvent
from quietsync.replica import Notifications, Replica


def final(job_id: str, status: str = "complete", error: str | None = None) -> JobEvent:
    return JobEvent("status", job_id, status, error=error, stamp=Clock("server").now())  # type: ignore[arg-type]


def test_job_end_writes_one_deterministic_record(replica: Replica) -> None:
    notes = Notifications(replica)
    event = final("j1")
    key = notes.notify_job_end("t1", event, "the reply")
    assert key == "job:j1:complete"
    assert notes.notify_job_end("t1", event, "the reply") == key  # again: same record
    pushed = replica.pending_count()
    assert [n["id"] for n in notes.list()] == [key]
    note = notes.list()[0]
    assert note["type"] == "ai.message.received" and note["body"] == "the reply"
    assert note["created_at"] == event.stamp.wall_ms and note["read_at"] is None  # type: ignore[union-attr]
    assert pushed == 7  # one outbox entry per field, once: the repeat was a no-op put


def test_a_failed_job_is_a_system_warning(replica: Replica) -> None:
    notes = Notifications(replica)
    notes.notify_job_end("t1", final("j1", "error", "provider down"), "")
    (note,) = notes.list()
    assert note["type"] == "system.warning" and note["body"] == "provider down"


def test_aborts_notify_nobody(replica: Replica) -> None:
    with pytest.raises(ValueError, match="aborted"):
        Notifications(replica).notify_job_end("t1", final("j1", "aborted"), "")
    assert replica.query(NOTIFICATIONS) == []


def test_muted_threads_get_no_notification_until_unmuted(replica: Replica) -> None:
    notes = Notifications(replica)
    notes.mute("t1")
    assert notes.is_muted("t1") and not notes.is_muted("t2")
    assert replica.get(MUTED_THREADS, "t1") == {"muted": True}
    assert notes.notify_job_end("t1", final("j1"), "x") is None
    assert notes.list() == []
    notes.unmute("t1")
    assert not notes.is_muted("t1")
    assert notes.notify_job_end("t1", final("j2"), "x") == "job:j2:complete"


def test_list_filters_by_thread_and_unread_newest_first(replica: Replica) -> None:
    notes = Notifications(replica)
    for job, thread in (("a", "t1"), ("b", "t2"), ("c", "t1")):
        notes.notify_job_end(thread, final(job), job)
    assert [n["job_id"] for n in notes.list()] == ["c", "b", "a"]
    assert [n["job_id"] for n in notes.list("t1")] == ["c", "a"]
    notes.mark_read("job:c:complete")
    assert [n["job_id"] for n in notes.list("t1", unread_only=True)] == ["a"]
    read_at = replica.get(NOTIFICATIONS, "job:c:complete")["read_at"]  # type: ignore[index]
    assert isinstance(read_at, int)
    notes.mark_read("job:c:complete")  # already read: unchanged
    assert replica.get(NOTIFICATIONS, "job:c:complete")["read_at"] == read_at  # type: ignore[index]


def test_a_read_notification_is_not_made_unread_by_a_rewrite(replica: Replica) -> None:
    notes = Notifications(replica)
    event = final("j1")
    notes.notify_job_end("t1", event, "x")
    notes.mark_read("job:j1:complete")
    notes.notify_job_end("t1", event, "x")
    assert notes.list(unread_only=True) == []


def test_bad_input_is_refused_and_changes_nothing(replica: Replica) -> None:
    notes = Notifications(replica)
    with pytest.raises(KeyError, match="no notification"):
        notes.mark_read("job:nope:complete")
    for bad in ("", 42, "x" * 300):
        with pytest.raises((TypeError, ValueError)):
            notes.mute(bad)  # type: ignore[arg-type]
        with pytest.raises((TypeError, ValueError)):
            notes.list(bad)  # type: ignore[arg-type]
    assert replica.pending_count() == 0 and replica.query(MUTED_THREADS) == []
