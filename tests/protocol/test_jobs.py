"""Job events and the deterministic completion notification."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietsync.conflicts import HLC
from quietsync.protocol import JobEvent, WireError, notification_for
from tests.conflicts.strategies import stamps

STAMP = HLC(1_700_000_000_000, 0, "server")


@given(
    st.sampled_from(["snapshot", "delta", "status"]),
    st.sampled_from(["streaming", "complete", "error", "aborted"]),
    st.text(max_size=20),
    st.integers(0, 100),
    st.none() | st.text(max_size=10),
    stamps,
)
def test_events_round_trip(
    kind: Any, status: Any, text: str, offset: int, error: Any, stamp: HLC
) -> None:
    event = JobEvent(kind, "j1", status, offset, text, offset + len(text), error, stamp)
    assert JobEvent.from_json(event.to_json()) == event


def test_keepalive_needs_no_stamp() -> None:
    assert JobEvent.from_json({"type": "keepalive", "job_id": "j"}).stamp is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"type": "bogus"}, "'type' must be one of"),
        ({"status": "done"}, "'status' must be one of"),
        ({"job_id": ""}, "'job_id' must be a non-empty string"),
        ({"text": 5}, "'text' must be a string"),
        ({"offset": -1}, "'offset' must be a non-negative integer"),
        ({"content_length": 1}, "exceeds 'content_length'"),
        ({"stamp": None}, "needs a 'stamp'"),
        ({"stamp": "later"}, "'stamp': not an HLC stamp"),
        ({"error": 3}, "'error' must be a string or null"),
    ],
)
def test_bad_events_are_refused_with_the_member_named(
    overrides: dict[str, Any], message: str
) -> None:
    obj = JobEvent("delta", "j1", offset=0, text="hey", content_length=3, stamp=STAMP).to_json()
    obj.update(overrides)
    with pytest.raises(WireError, match=message):
        JobEvent.from_json(obj)


def test_event_must_be_an_object() -> None:
    with pytest.raises(WireError, match="must be a JSON object"):
        JobEvent.from_json(["delta"])


def test_notification_is_identical_wherever_it_is_derived() -> None:
    final = JobEvent("status", "j1", "complete", content_length=11, stamp=STAMP)
    server_side = notification_for("t1", final, "hello world")
    client_side = notification_for("t1", JobEvent.from_json(final.to_json()), "hello world")
    assert server_side == client_side
    key, fields = server_side
    assert key == "job:j1:complete"
    assert fields["type"] == "ai.message.received"
    assert fields["created_at"] == STAMP.wall_ms
    assert fields["read_at"] is None and fields["thread_id"] == "t1"


def test_failed_job_notifies_a_warning_and_aborted_job_notifies_nobody() -> None:
    failed = JobEvent("status", "j2", "error", error="provider down", stamp=STAMP)
    key, fields = notification_for("t1", failed, "")
    assert key == "job:j2:error"
    assert (fields["type"], fields["body"]) == ("system.warning", "provider down")
    with pytest.raises(ValueError, match="aborted"):
        notification_for("t1", JobEvent("status", "j3", "aborted", stamp=STAMP), "")
