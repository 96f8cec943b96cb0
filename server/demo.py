"""`quietsync demo`: the whole system in one process, narrated step by step.

An embedded server (SQLite in a temporary directory, the scripted provider
slowed down so a thread switch lands mid-stream) and two replicas of user
alice — "laptop" and "phone" — each with its own `SyncClient` live loop and its
own `StreamTracker`. The laptop shows a `ChatPane`. Read it top to bottom: each
`step_*` method is one part of the story and uses only the public API.

1. A question streams into thread A; the reply grows in the pane.
2. The pane switches to thread B; the tracker keeps persisting the reply.
3. The pane comes back to A: the content so far at once, then live deltas.
4. The pane leaves again and the reply completes unwatched: one notification,
   which reaches the phone through sync together with the reply.
5. Both replicas edit the same note offline: an identical edit (suppressed)
   and a divergent one (one conflict reported, the winner everywhere).

Every expectation is checked; a broken one ends the demo with exit status 1
and says which. This is the top layer: it may import both `server` and
`replica`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from conflicts.jobs import MESSAGES, NOTIFICATIONS
from replica import ChangeEvent, ChatPane, Notifications, Replica, StreamTracker, SyncClient
from server.providers import scripted_reply
from server.testing import RunningServer, running_server

__all__ = ["demo", "run_demo"]

QUESTION = "does my reply survive a thread switch"
TOKENS = 60
TOKEN_DELAY = 0.1
"""Seconds per token: ~6 s of streaming, enough to switch away, back and away again."""
STEP_TIMEOUT = 15.0
"""Seconds any one wait may take before the demo calls the step broken."""
NOTES = "notes"
REPLY_TOKENS = scripted_reply(QUESTION, TOKENS)
REPLY = "".join(REPLY_TOKENS)


class _Broken(Exception):
    """An expectation of the demo does not hold; `demo` prints it and exits 1."""


def _content(replica: Replica, key: str) -> str:
    return (replica.get(MESSAGES, key) or {}).get("content") or ""


def _tail(text: str, width: int = 44) -> str:
    return repr(text if len(text) <= width else "…" + text[-width:])


class Demo:
    """The story's state: the two replicas, their clients, the pane, and what was counted."""

    def __init__(self, server: RunningServer, folder: Path) -> None:
        self.server = server
        self.folder = folder
        self.stack = AsyncExitStack()
        self.wake = asyncio.Event()
        self.started = time.monotonic()
        self.lines = 0
        self.switches = 0
        self.deltas = 0
        self.persisted: list[int] = []
        self.reply_id = ""

    # -- plumbing: narration, waiting, the two devices ---------------------------------

    def say(self, text: str) -> None:
        self.lines += 1
        print(f"{self.lines:2}. {text}", flush=True)

    def _poke(self, *_args: object) -> None:
        self.wake.set()

    async def until(self, condition: Callable[[], object], what: str) -> None:
        """Wait (woken by replica commits, deltas and sync status) until `condition()` holds."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            self.wake.clear()
            if condition():
                return
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _Broken(f"timed out after {STEP_TIMEOUT:.0f} s waiting for {what}") from None

    async def device(self, name: str) -> tuple[Replica, SyncClient, StreamTracker]:
        """A replica file, its live sync loop and its stream tracker, closed at the end."""
        replica = self.stack.enter_context(Replica.open(self.folder / f"{name}.db", node_id=name))
        for collection in (MESSAGES, NOTIFICATIONS, NOTES):
            replica.subscribe(collection, self._poke)
        token = self.server.token("alice")
        sync = SyncClient(replica, self.server.url, token=token, on_status=self._poke)
        await self.stack.enter_async_context(sync)  # starts the live loop; stops it on exit
        tracker = StreamTracker(replica, self.server.url, token=token)
        self.stack.push_async_callback(tracker.close)
        return replica, sync, tracker

    async def open_thread(self, thread_id: str) -> None:
        await self.pane.open(thread_id)
        self.switches += 1

    def _on_delta(self, message_id: str, _delta: str) -> None:
        if message_id == self.reply_id:
            self.deltas += 1
            self.wake.set()

    def _on_message(self, event: ChangeEvent) -> None:
        if event.key == self.reply_id and "content" in event.fields:
            self.persisted.append(len(_content(self.laptop, self.reply_id)))

    def shown(self) -> str:
        """The reply's text as the pane shows it now."""
        session = self.pane.session
        messages = session.messages if session is not None else []
        return next((m.get("content") or "" for m in messages if m["id"] == self.reply_id), "")

    # -- the story --------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        async with self.stack:
            self.laptop, self.laptop_sync, self.tracker = await self.device("laptop")
            self.phone, self.phone_sync, self.phone_tracker = await self.device("phone")
            self.laptop.subscribe(MESSAGES, self._on_message)
            self.pane = ChatPane(self.laptop, self.tracker, on_delta=self._on_delta)
            self.say(f"server on {self.server.url} (SQLite in a temp dir); replicas laptop, phone")
            job_id = await self.step_stream()
            await self.step_switch_away()
            await self.step_come_back()
            await self.step_complete(job_id)
            return await self.step_offline_edits()

    async def step_stream(self) -> str:
        await self.open_thread("A")
        session = self.pane.session
        assert session is not None
        self.reply_id = await session.send(QUESTION)
        job_id = session.background_job_id or ""
        self.say(f"laptop, thread A: asks {QUESTION!r}; job {job_id[:8]} streams the reply")
        for seen in (4, 8, 12):
            await self.until(lambda n=seen: self.deltas >= n, f"{seen} deltas of the reply")
            text = self.shown()
            self.say(f"  reply growing in the pane: {len(text):3} chars {_tail(text)}")
        return job_id

    async def step_switch_away(self) -> None:
        await self.open_thread("B")
        at_switch = _content(self.laptop, self.reply_id)
        self.say(f"view switched to thread B mid-stream; replica holds {len(at_switch)} chars")
        for grown in (1, 2):
            await self.until(
                lambda g=grown: len({n for n in self.persisted if n > len(at_switch)}) >= g,
                "the replica to keep persisting the reply while the view is on B",
            )
            self.say(f"  view on B, reply persisted in the replica: {self.persisted[-1]} chars")

    async def step_come_back(self) -> None:
        await self.open_thread("A")
        at_once = self.shown()
        self.say(f"view back on A: {len(at_once)} chars shown at once (reattached, no gap)")
        live_from = self.deltas
        for step in (1, 2, 3):
            await self.until(lambda s=step: self.deltas >= live_from + s, "live deltas on A")
            text = self.shown()
            self.say(f"  live delta: {len(text):3} chars {_tail(text)}")
        if not self.shown().startswith(at_once):
            raise _Broken("the reattached view lost text it had shown")

    async def step_complete(self, job_id: str) -> None:
        await self.open_thread("B")
        self.say("view leaves for B again before the end: the reply will finish unwatched")
        try:
            status = await self.tracker.wait(job_id, timeout=STEP_TIMEOUT)
        except TimeoutError:
            raise _Broken(f"the reply did not end within {STEP_TIMEOUT:.0f} s") from None
        laptop_text = _content(self.laptop, self.reply_id)
        if status != "complete" or laptop_text != REPLY:
            raise _Broken(f"reply lost: job {status}, {len(laptop_text)}/{len(REPLY)} chars")
        if any(b < a for a, b in itertools.pairwise(self.persisted)):
            raise _Broken("the persisted reply went backwards")
        self.say(f"reply completed: {len(REPLY)} chars, persisted in {len(self.persisted)} commits")
        notes = Notifications(self.laptop).list()
        if len(notes) != 1:
            raise _Broken(f"expected exactly one notification, found {len(notes)}")
        self.say(f"  one notification: [{notes[0]['type']}] {notes[0]['title']!r}")
        await self.until(
            lambda: (
                _content(self.phone, self.reply_id) == REPLY
                and [n["id"] for n in Notifications(self.phone).list()] == [notes[0]["id"]]
            ),
            "the phone to receive the reply and the one notification by sync",
        )
        self.say(f"  phone, by sync alone: the whole reply and notification {notes[0]['id'][:12]}…")
        if await self.phone_tracker.resume_pending():
            raise _Broken("the phone still shows the reply as pending")
        if self.laptop.conflicts() or self.phone.conflicts():
            raise _Broken("streaming produced a conflict; job fields must never conflict")

    async def step_offline_edits(self) -> dict[str, Any]:
        laptop, phone = self.laptop, self.phone
        laptop.put(NOTES, "n1", {"title": "Groceries", "owner": "sam"})
        await self.until(lambda: phone.get(NOTES, "n1") == laptop.get(NOTES, "n1"), "note synced")
        self.say(f"note n1 on both replicas: {laptop.get(NOTES, 'n1')}")
        suppressed_before = laptop.suppressed_count() + phone.suppressed_count()
        await self.laptop_sync.stop()
        await self.phone_sync.stop()
        title = "Groceries for Saturday"
        laptop.put(NOTES, "n1", {"title": title, "owner": "ana"})
        phone.put(NOTES, "n1", {"title": title, "owner": "bo"})
        self.say(f"both offline: both set title {title!r}; owner laptop 'ana', phone 'bo'")
        await self.laptop_sync.start()
        await self.until(lambda: laptop.pending_count() == 0, "the laptop to push")
        await self.phone_sync.start()
        await self.until(lambda: phone.pending_count() == 0, "the phone to push")
        suppressed = laptop.suppressed_count() + phone.suppressed_count() - suppressed_before
        conflicts = laptop.conflicts() + phone.conflicts()
        self.say(f"back online: identical title suppressed +{suppressed}, no conflict for it")
        if suppressed != 1 or [c.field for c in conflicts] != ["owner"]:
            raise _Broken(
                f"expected 1 suppressed and 1 owner conflict, got {suppressed}, "
                f"{[(c.field, c.winner.value, c.loser.value) for c in conflicts]}"
            )
        (conflict,) = conflicts
        winner, loser = conflict.winner, conflict.loser
        self.say(
            f"  conflict reported on owner: winner {winner.value!r} ({winner.node}), "
            f"loser {loser.value!r} ({loser.node})"
        )
        final = {"title": title, "owner": winner.value}
        await self.until(
            lambda: laptop.get(NOTES, "n1") == phone.get(NOTES, "n1") == final,
            "both replicas to converge on the winner",
        )
        self.say(f"  both replicas end with {final}")
        # A write is accounted for if it is what both hold now, or a reported loser.
        held, losers = laptop.get(NOTES, "n1") or {}, {(c.field, c.loser.value) for c in conflicts}
        writes = [("title", title), ("title", title), ("owner", "ana"), ("owner", "bo")]
        lost = sum(1 for f, v in writes if held.get(f) != v and (f, v) not in losers)
        return {
            "replies streamed": 1,
            "tokens persisted": f"{_tokens_in(_content(laptop, self.reply_id))} / {TOKENS}",
            "thread switches": self.switches - 1,
            "notifications": len(Notifications(laptop).list()),
            "conflicts reported": len(conflicts),
            "conflicts suppressed": suppressed,
            "lost writes": lost,
            "elapsed": f"{time.monotonic() - self.started:.1f} s",
        }


def _tokens_in(text: str) -> int:
    """How many of the scripted reply's tokens `text` holds, from the start."""
    count, prefix = 0, ""
    for token in REPLY_TOKENS:
        prefix += token
        if not text.startswith(prefix):
            break
        count += 1
    return count


async def run_demo(**server_options: Any) -> int:
    """Run the story against an embedded server and print it; the exit status (0 or 1).

    `server_options` are `running_server` overrides (the tests break the
    provider with ``job_fail_after`` to see the demo fail loudly).
    """
    options = {"job_tokens": TOKENS, "job_token_delay": TOKEN_DELAY, **server_options}
    try:
        with tempfile.TemporaryDirectory(prefix="quietsync-demo-") as folder:
            async with running_server(**options) as server:
                summary = await Demo(server, Path(folder)).run()
        if summary["lost writes"]:
            raise _Broken(f"{summary['lost writes']} writes are unaccounted for")
    except _Broken as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    print("\nsummary")
    width = max(map(len, summary))
    for name, value in summary.items():
        print(f"  {name:<{width}}  {value:>10}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """`quietsync demo`: 0 if every expectation held, 1 (with the reason) otherwise."""
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the narration is the output
    return asyncio.run(run_demo())
