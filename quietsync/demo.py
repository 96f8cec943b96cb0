"""`quietsync demo`: the whole system in one process, narrated step by step.

An embedded server (SQLite in a temporary directory, the scripted provider
slowed down so a thread switch lands mid-stream), two replicas of user alice
— "laptop" and "phone" — and one of user bob, each with its own `SyncClient`
live loop and its own `StreamTracker`. The laptop shows a `ChatPane`. Read it top to bottom: each
`step_*` method is one part of the story and uses only the public API.

1. A question streams into thread A; the reply grows in the pane.
2. The pane switches to thread B; the tracker keeps persisting the reply.
3. The pane comes back to A: the content so far at once, then live deltas.
4. The pane leaves again and the reply completes unwatched: one notification,
   which reaches the phone through sync together with the reply.
5. Both replicas edit the same note offline: an identical edit (suppressed)
   and a divergent one (one conflict reported, the winner everywhere).
6. Alice shares a space with bob: his replica learns of it live and pulls its
   thread and document; both edit the document at once (CRDT text, they
   converge) and the thread's title (one conflict, naming alice and bob).

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

import attrs

from quietsync.conflicts import Conflict
from quietsync.protocol.jobs import MESSAGES, NOTIFICATIONS
from quietsync.replica import (
    ChangeEvent,
    ChatPane,
    Notifications,
    Replica,
    SpacesClient,
    SpaceView,
    StreamTracker,
    SyncClient,
    ThreadSession,
)
from quietsync.server.jobs import JobsConfig, ScriptedProvider, scripted_reply
from quietsync.testing import RunningServer, running_server

__all__ = ["Demo", "Device", "demo", "run_demo"]

QUESTION = "does my reply survive a thread switch"
TOKENS = 60
TOKEN_DELAY = 0.1
"""Seconds per token: ~6 s of streaming, enough to switch away, back and away again."""
STEP_TIMEOUT = 15.0
"""Seconds any one wait may take before the demo calls the step broken."""
NOTES = "notes"
THREADS = "threads"
PLAN = "Day 1: Alfama, pastéis de nata 🥮"
USERS = {"alice": "demo-token-alice", "bob": "demo-token-bob"}
REPLY_TOKENS = scripted_reply(QUESTION, TOKENS)
REPLY = "".join(REPLY_TOKENS)


class _Broken(Exception):
    """An expectation of the demo does not hold; `demo` prints it and exits 1."""


def _content(replica: Replica, key: str) -> str:
    return (replica.get(MESSAGES, key) or {}).get("content") or ""


def _tail(text: str, width: int = 44) -> str:
    return repr(text if len(text) <= width else "…" + text[-width:])


@attrs.frozen
class Device:
    """One install of the app: a replica file, its live sync loop, its stream tracker."""

    replica: Replica
    sync: SyncClient
    tracker: StreamTracker

    @classmethod
    async def open(
        cls,
        stack: AsyncExitStack,
        server: RunningServer,
        path: Path,
        wake: asyncio.Event,
        user: str = "alice",
    ) -> Device:
        """Open everything for `user`; `stack` closes it (tracker, sync, file) at the end.

        Every commit and sync status change sets `wake`: it may satisfy a waiting step.
        """
        replica = stack.enter_context(Replica.open(path, node_id=path.stem))
        for collection in (MESSAGES, NOTIFICATIONS, NOTES):
            replica.subscribe(collection, lambda _event: wake.set())
        token = server.token(user)
        sync = SyncClient(replica, server.url, token=token, on_status=lambda _s: wake.set())
        await stack.enter_async_context(sync)  # starts the live loop; stops it on exit
        tracker = StreamTracker(replica, server.url, token=token)
        stack.push_async_callback(tracker.close)
        return cls(replica, sync, tracker)


class Demo:
    """The story over three devices: alice's laptop shows a `ChatPane`, her phone and
    bob's replica only sync."""

    def __init__(
        self, server: RunningServer, laptop: Device, phone: Device, bob: Device, wake: asyncio.Event
    ) -> None:
        self.server = server
        self.laptop, self.phone, self.bob = laptop, phone, bob
        self.wake = wake
        self.pane = ChatPane(laptop.replica, laptop.tracker, on_delta=self._on_delta)
        self.lines = 0
        self.switches = 0
        self.deltas = 0
        self.persisted: list[int] = []
        """The reply's length after each laptop commit that changed it."""
        self.reply_id = ""
        laptop.replica.subscribe(MESSAGES, self._on_message)

    # -- narration and waiting -------------------------------------------------------

    def say(self, text: str) -> None:
        self.lines += 1
        print(f"{self.lines:2}. {text}", flush=True)

    async def until(self, condition: Callable[[], object], what: str) -> None:
        """Wait until `condition()` holds, re-checking whenever `wake` is set.

        Replica commits, sync status changes and the pane's deltas set it, so
        no step polls and none sleeps on a guess; a step taking longer than
        `STEP_TIMEOUT` is a broken expectation.
        """
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            self.wake.clear()
            if condition():
                return
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _Broken(f"timed out after {STEP_TIMEOUT:.0f} s waiting for {what}") from None

    async def open_thread(self, thread_id: str) -> ThreadSession:
        self.switches += 1
        return await self.pane.open(thread_id)

    def _on_delta(self, message_id: str, _delta: str) -> None:
        if message_id == self.reply_id:
            self.deltas += 1
            self.wake.set()

    def _on_message(self, event: ChangeEvent) -> None:
        if event.key == self.reply_id and "content" in event.fields:
            self.persisted.append(len(_content(self.laptop.replica, self.reply_id)))

    def shown(self) -> str:
        """The reply's text as the pane shows it now."""
        session = self.pane.session
        messages = session.messages if session is not None else []
        return next((m.get("content") or "" for m in messages if m["id"] == self.reply_id), "")

    # -- the story --------------------------------------------------------------------

    async def run(self) -> dict[str, object]:
        """Every step in order; the summary rows (elapsed excepted)."""
        job_id = await self.step_stream()
        await self.step_switch_away()
        await self.step_come_back()
        await self.step_complete(job_id)
        summary = await self.step_offline_edits()
        return {**summary, **await self.step_share()}

    async def step_stream(self) -> str:
        session = await self.open_thread("A")
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
        at_switch = _content(self.laptop.replica, self.reply_id)
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
            status = await self.laptop.tracker.wait(job_id, timeout=STEP_TIMEOUT)
        except TimeoutError:
            raise _Broken(f"the reply did not end within {STEP_TIMEOUT:.0f} s") from None
        laptop_text = _content(self.laptop.replica, self.reply_id)
        if status != "complete" or laptop_text != REPLY:
            raise _Broken(f"reply lost: job {status}, {len(laptop_text)}/{len(REPLY)} chars")
        if any(b < a for a, b in itertools.pairwise(self.persisted)):
            raise _Broken("the persisted reply went backwards")
        self.say(f"reply completed: {len(REPLY)} chars, persisted in {len(self.persisted)} commits")
        notes = Notifications(self.laptop.replica).list()
        if len(notes) != 1:
            raise _Broken(f"expected exactly one notification, found {len(notes)}")
        self.say(f"  one notification: [{notes[0]['type']}] {notes[0]['title']!r}")
        await self.until(
            lambda: (
                _content(self.phone.replica, self.reply_id) == REPLY
                and [n["id"] for n in Notifications(self.phone.replica).list()] == [notes[0]["id"]]
            ),
            "the phone to receive the reply and the one notification by sync",
        )
        self.say(f"  phone, by sync alone: the whole reply and notification {notes[0]['id'][:12]}…")
        if await self.phone.tracker.resume_pending():  # nothing left to follow
            raise _Broken("the phone still shows the reply as pending")
        if self.laptop.replica.conflicts() or self.phone.replica.conflicts():
            raise _Broken("streaming produced a conflict; job fields must never conflict")

    async def step_offline_edits(self) -> dict[str, object]:
        laptop, phone = self.laptop.replica, self.phone.replica
        laptop.put(NOTES, "n1", {"title": "Groceries", "owner": "sam"})
        await self.until(lambda: phone.get(NOTES, "n1") == laptop.get(NOTES, "n1"), "note synced")
        self.say(f"note n1 on both replicas: {laptop.get(NOTES, 'n1')}")
        suppressed_before = laptop.suppressed_count() + phone.suppressed_count()
        await self.laptop.sync.stop()  # offline: the outbox keeps what is written now
        await self.phone.sync.stop()
        title = "Groceries for Saturday"
        laptop.put(NOTES, "n1", {"title": title, "owner": "ana"})
        phone.put(NOTES, "n1", {"title": title, "owner": "bo"})
        self.say(f"both offline; both set title {title!r}; owner laptop 'ana', phone 'bo'")
        await self.laptop.sync.start()
        await self.until(lambda: laptop.pending_count() == 0, "the laptop to push")
        await self.phone.sync.start()
        await self.until(lambda: phone.pending_count() == 0, "the phone to push")
        suppressed = laptop.suppressed_count() + phone.suppressed_count() - suppressed_before
        conflicts = _reported(laptop, phone)
        self.say(f"back online: identical title suppressed +{suppressed}, no conflict for it")
        if suppressed != 1 or [c.field for c in conflicts] != ["owner"]:
            raise _Broken(
                f"expected 1 suppressed and 1 owner conflict, got {suppressed}, "
                f"{[(c.field, c.winner.value, c.loser.value) for c in conflicts]}"
            )
        (conflict,) = conflicts
        winner, loser = conflict.winner, conflict.loser
        self.say(
            f"  conflict on owner, detected by the {conflict.detected_by}: winner "
            f"{winner.value!r} ({winner.node}), loser {loser.value!r} ({loser.node})"
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
            "thread switches": self.switches - 1,  # the first open is not a switch
            "notifications": len(Notifications(laptop).list()),
            "conflicts reported": len(conflicts),
            "conflicts suppressed": suppressed,
            "lost writes": lost,
        }

    async def step_share(self) -> dict[str, object]:
        async with SpacesClient(self.server.url, token=self.server.token("alice")) as spaces:
            trip = await spaces.create("Lisbon in May ✈️")
            await spaces.set_role(trip.id, "bob", "write")
        self.say(f"alice creates space {trip.name!r} and adds bob as a writer")
        mine, his = self.laptop.replica.space(trip.id), self.bob.replica.space(trip.id)
        for view in (mine, his):
            view.subscribe(NOTES, lambda _event: self.wake.set())
            view.subscribe(THREADS, lambda _event: self.wake.set())
        mine.put(THREADS, "lisbon", {"title": "Lisbon"})
        mine.text_insert(NOTES, "plan", "body", 0, PLAN)
        await self.until(
            lambda: (his.get(NOTES, "plan") or {}).get("body") == PLAN,
            "bob's replica to learn of the space and pull its document",
        )
        self.say(f"  bob's replica heard of the space live and pulled it: {PLAN!r}")
        for device in (self.laptop, self.bob):  # both offline: the edits are concurrent
            await device.sync.stop()
        mine.text_insert(NOTES, "plan", "body", len(PLAN), "\nDay 2: Sintra 🏰")
        his.text_insert(NOTES, "plan", "body", 0, "Packing: 🧳 ")
        mine.put(THREADS, "lisbon", {"title": "Lisbon & Sintra"})
        his.put(THREADS, "lisbon", {"title": "Lisbon, São Bento"})
        self.say("both offline: each edits the plan and renames the thread")
        for device in (self.laptop, self.bob):
            await device.sync.start()
        await self.until(
            lambda: (
                mine.get(NOTES, "plan") == his.get(NOTES, "plan")
                and mine.get(THREADS, "lisbon") == his.get(THREADS, "lisbon")
                and self.laptop.replica.pending_count() == self.bob.replica.pending_count() == 0
            ),
            "both replicas to converge on the shared space",
        )
        plan = (mine.get(NOTES, "plan") or {}).get("body", "")
        if not ("Packing: 🧳 " in plan and PLAN in plan and "Day 2: Sintra 🏰" in plan):
            raise _Broken(f"the shared plan lost an edit: {plan!r}")
        self.say(f"  the plan merged, every edit kept: {plan!r}")
        await self.until(lambda: _reported(mine, his), "the title conflict to be reported")
        (conflict,) = _reported(mine, his)
        users = {conflict.winner.user, conflict.loser.user}
        if users != {"alice", "bob"}:
            raise _Broken(f"the title conflict should name alice and bob, named {users}")
        self.say(
            f"  title conflict naming both: {conflict.winner.user} wins with "
            f"{conflict.winner.value!r}; {conflict.loser.user}'s {conflict.loser.value!r} is "
            "reported"
        )
        return {"shared spaces": 1, "shared conflicts": 1}


def _reported(*views: SpaceView) -> list[Conflict]:
    """The conflicts these views list, each once (the pusher hears of a conflict in its
    push's answer, the other devices when they next read the space's conflict log)."""
    return list({c.loser.stamp: c for view in views for c in view.conflicts()}.values())


def _tokens_in(text: str) -> int:
    """How many of the scripted reply's tokens `text` holds, from the start."""
    count, prefix = 0, ""
    for token in REPLY_TOKENS:
        prefix += token
        if not text.startswith(prefix):
            break
        count += 1
    return count


async def run_demo(*, fail_after: int | None = None) -> int:
    """Run the story against an embedded server and print it; the exit status (0 or 1).

    `fail_after` breaks the scripted reply after that many tokens (the tests
    do, to see the demo fail loudly).
    """
    started = time.monotonic()
    provider = ScriptedProvider(TOKENS, TOKEN_DELAY, fail_after)
    wake = asyncio.Event()
    try:
        with tempfile.TemporaryDirectory(prefix="quietsync-demo-") as folder:
            async with (
                running_server(users=USERS, jobs=JobsConfig(provider=provider)) as server,
                AsyncExitStack() as stack,
            ):
                folder_path = Path(folder)
                laptop = await Device.open(stack, server, folder_path / "laptop.db", wake)
                phone = await Device.open(stack, server, folder_path / "phone.db", wake)
                bob = await Device.open(stack, server, folder_path / "bob.db", wake, user="bob")
                print(f"server on {server.url}, SQLite files in {folder}", flush=True)
                summary = await Demo(server, laptop, phone, bob, wake).run()
        if summary["lost writes"]:
            raise _Broken(f"{summary['lost writes']} writes are unaccounted for")
    except _Broken as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    summary["elapsed"] = f"{time.monotonic() - started:.1f} s"
    print("\nsummary")
    width = max(map(len, summary))
    for name, value in summary.items():
        print(f"  {name:<{width}}  {value!s:>10}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """`quietsync demo`: 0 if every expectation held, 1 (with the reason) otherwise."""
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the narration is the output
    return asyncio.run(run_demo())
