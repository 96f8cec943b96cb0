"""Change subscriptions: after commit, for local and remote changes, never breaking a write."""

from __future__ import annotations

import asyncio
import logging

import pytest

from quietsync.replica import ChangeEvent, Replica
from quietsync.replica.replica import sync_port
from tests.replica.conftest import Server


def test_subscribers_hear_local_and_remote_changes_of_their_collection(
    replica: Replica, server: Server
) -> None:
    seen: list[ChangeEvent] = []
    replica.subscribe("items", seen.append)
    replica.put("items", "a", {"x": 1, "y": 2})
    replica.put("other", "a", {"x": 1})
    sync_port(replica).apply_remote([server.change("b", "z", 3)])
    assert seen == [
        ChangeEvent("items", "a", frozenset({"x", "y"}), "local"),
        ChangeEvent("items", "b", frozenset({"z"}), "remote"),
    ]


def test_a_key_subscription_and_unsubscribe(replica: Replica) -> None:
    seen: list[str] = []
    unsubscribe = replica.subscribe("items", lambda e: seen.append(e.key), key="a")
    replica.put("items", "a", {"x": 1})
    replica.put("items", "b", {"x": 1})
    unsubscribe()
    unsubscribe()
    replica.put("items", "a", {"x": 2})
    assert seen == ["a"]


def test_callbacks_run_after_commit(replica: Replica) -> None:
    seen: list[dict | None] = []
    replica.subscribe("items", lambda e: seen.append(replica.get(e.collection, e.key)))
    with replica.transaction():
        replica.put("items", "a", {"x": 1})
        replica.put("items", "a", {"y": 2})
        assert seen == []
    assert seen == [{"x": 1, "y": 2}, {"x": 1, "y": 2}]


def test_no_event_for_a_no_op_or_a_rolled_back_write(replica: Replica) -> None:
    replica.put("items", "a", {"x": 1})
    seen: list[ChangeEvent] = []
    replica.subscribe("items", seen.append)
    replica.put("items", "a", {"x": 1.0})
    with pytest.raises(KeyError), replica.transaction():
        replica.put("items", "b", {"x": 1})
        raise KeyError("abort")
    assert seen == []


def test_a_failing_callback_is_logged_and_the_write_stands(
    replica: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(event: ChangeEvent) -> None:
        raise RuntimeError("view is gone")

    replica.subscribe("items", broken)
    replica.subscribe("items", lambda e: seen.append(e.key))
    with caplog.at_level(logging.ERROR, logger="replica.subscriptions"):
        replica.put("items", "a", {"x": 1})
    assert replica.get("items", "a") == {"x": 1}
    assert seen == ["a"]
    assert "view is gone" in caplog.text and "the write stands" in caplog.text


async def test_a_view_on_the_loop_can_wait_for_a_change(replica: Replica) -> None:
    changed = asyncio.Event()
    replica.subscribe("items", lambda e: changed.set(), key="a")
    asyncio.get_running_loop().call_soon(replica.put, "items", "a", {"x": 1})
    await asyncio.wait_for(changed.wait(), timeout=5)
    assert replica.get("items", "a") == {"x": 1}
