"""Child process for the restart test: starts a reply, then streams until it is SIGKILLed.

Usage: ``python stream_child.py <replica path> <server url> <token> <prompt>``.
Prints ``job <job_id> <message_id>`` once the job runs, ``persisted`` once some
of the reply is in the replica file, then waits for ever.
"""

from __future__ import annotations

import asyncio
import sys

from quietsync.protocol.jobs import MESSAGES
from quietsync.replica import Replica, StreamTracker, ThreadSession


async def main() -> None:
    path, url, token, prompt = sys.argv[1:5]
    replica = Replica.open(path, node_id="client")
    tracker = StreamTracker(replica, url, token=token)
    session = ThreadSession(replica, tracker, "t1")
    message_id = await session.send(prompt)
    print(f"job {session.background_job_id} {message_id}", flush=True)
    persisted = asyncio.Event()
    replica.subscribe(MESSAGES, lambda _e: persisted.set(), key=message_id)
    while not (replica.get(MESSAGES, message_id) or {}).get("content"):
        persisted.clear()
        await persisted.wait()
    print("persisted", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
