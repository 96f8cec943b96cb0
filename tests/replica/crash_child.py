"""Child process for the crash-safety test: writes until it is SIGKILLed.

Usage: ``python crash_child.py <replica path> <first index>``. Prints ``ready``,
then for ever: ``put()`` of record ``k<i>`` (every third call a ``put_many``
of ``k<i>`` and ``k<i+1>``, one outbox row for both) and ``W <keys>`` once it
returned; every 5th call also pushes three outbox entries, which splits rows
(``p <key/field ...>`` before ``mark_pushed``, ``P <key/field ...>`` after it
returned). Every line
is flushed, so a printed line is an acknowledgement the parent may rely on.
"""

from __future__ import annotations

import sys

from quietsync.replica import Replica
from quietsync.replica.replica import sync_port


def main() -> None:
    path, first = sys.argv[1], int(sys.argv[2])
    replica = Replica.open(path, node_id="crashy")
    print("ready", flush=True)
    i, calls = first, 0
    while True:
        keys = [f"k{i}", f"k{i + 1}"] if calls % 3 == 2 else [f"k{i}"]
        replica.put_many(
            "items", {key: {"i": i + n, "text": "x" * ((i + n) % 50)} for n, key in enumerate(keys)}
        )
        print(f"W {' '.join(keys)}", flush=True)
        i, calls = i + len(keys), calls + 1
        if calls % 5 == 0:
            batch = sync_port(replica).outbox_batch(3)
            pushed = " ".join(f"{m.key}/{m.field}" for m in batch)
            print(f"p {pushed}", flush=True)
            sync_port(replica).mark_pushed(m.id for m in batch)
            print(f"P {pushed}", flush=True)


if __name__ == "__main__":
    main()
