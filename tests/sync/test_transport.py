"""Decoding the server's answers (`replica.transport`) and the `Backoff` schedule."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from quietsync.replica import Backoff, ProtocolError, PushRefusedError, RequestRefusedError
from quietsync.replica.http import decode_error
from quietsync.replica.transport import decode_live, decode_pull, decode_push


def js(obj: Any) -> bytes:
    """An answer as the server sends it: JSON bytes."""
    return json.dumps(obj).encode()


STAMP = "001763946000000-00000000-n1"
CHANGE = {
    "id": "n1:1", "collection": "c", "key": "k", "field": "f", "kind": "lww",
    "value": 1, "stamp": STAMP, "base": None, "seq": 1,
}  # fmt: skip


def test_a_push_answer_decodes():
    conflict = {
        "collection": "c", "key": "k", "field": "f", "detected_by": "server",
        "winner": {"value": 1, "stamp": STAMP, "node": "n1"},
        "loser": {"value": 2, "stamp": STAMP.replace("n1", "n2"), "node": "n2"},
    }  # fmt: skip
    answer = decode_push(
        js(
            {
                "results": [{"id": "n1:1", "outcome": "applied"}],
                "conflicts": [conflict],
                "suppressed": 2,
                "cursor": 9,
            }
        )
    )
    assert answer.outcomes == {"n1:1": "applied"}
    assert answer.conflicts[0].loser.node == "n2"
    assert (answer.suppressed, answer.cursor) == (2, 9)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"results": 5, "conflicts": [], "suppressed": 0, "cursor": 0},
        {
            "results": [{"id": 1, "outcome": "applied"}],
            "conflicts": [],
            "suppressed": 0,
            "cursor": 0,
        },
        {"results": [{"id": "a", "outcome": "won"}], "conflicts": [], "suppressed": 0, "cursor": 0},
        {"results": [], "conflicts": [{"collection": "c"}], "suppressed": 0, "cursor": 0},
        {"results": [], "conflicts": [], "suppressed": -1, "cursor": 0},
        {"results": [], "conflicts": [], "suppressed": 0, "cursor": True},
    ],
)
def test_a_bad_push_answer_is_a_protocol_error(body: Any):
    with pytest.raises(ProtocolError):
        decode_push(js(body))


def test_pull_pages_and_live_messages_decode():
    page = decode_pull(js({"changes": [CHANGE], "cursor": 1, "has_more": False}))
    assert page.changes[0].seq == 1 and page.has_more is False
    assert decode_live(js({"type": "hello", "cursor": 3})).cursor == 3
    assert (
        decode_live(js({"type": "changes", "changes": [CHANGE], "cursor": 1})).changes
        == page.changes
    )
    assert decode_live(js({"type": "pull", "cursor": 4})).type == "pull"


@pytest.mark.parametrize(
    "body",
    [
        {"changes": [CHANGE], "cursor": 1},
        {"changes": [{**CHANGE, "stamp": "yesterday"}], "cursor": 1, "has_more": False},
        {"changes": [], "cursor": -1, "has_more": False},
    ],
)
def test_a_bad_pull_page_is_a_protocol_error(body: Any):
    with pytest.raises(ProtocolError):
        decode_pull(js(body))


def test_an_unknown_live_message_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="live message does not fit the protocol"):
        decode_live(js({"type": "gossip", "cursor": 1}))


def test_error_bodies_become_refusals():
    refused = decode_error(
        422,
        {
            "error": {"code": "mutations_refused", "message": "1 of 2 refused"},
            "refused": [{"index": 1, "id": "n1:2", "code": "clock_drift", "reason": "ahead"}],
        },
    )
    assert isinstance(refused, PushRefusedError)
    assert refused.refused == [("n1:2", "clock_drift: ahead")]
    plain = decode_error(401, {"error": {"code": "unauthorized", "message": "no token"}})
    assert type(plain) is RequestRefusedError and plain.code == "unauthorized"
    assert decode_error(404, "not json at all").code == "http_error"
    with pytest.raises(ProtocolError):
        decode_error(422, {"error": {"code": "x"}, "refused": [{"index": 0}]})


def test_backoff_grows_with_full_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(base=0.1, cap=1.0, rng=random.Random(1))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for ceiling in ceilings:
        assert 0.0 <= backoff.next_delay() <= ceiling
    assert backoff.failures == len(ceilings)
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay() <= 0.1
    many = [Backoff(base=0.1, cap=1.0, rng=random.Random(s)) for s in range(50)]
    spread = {round(b.next_delay(), 6) for b in many}
    assert len(spread) > 40  # jitter: replicas do not retry in lockstep


def test_backoff_refuses_nonsense_bounds():
    with pytest.raises(ValueError):
        Backoff(base=0.0)
    with pytest.raises(ValueError):
        Backoff(base=2.0, cap=1.0)
