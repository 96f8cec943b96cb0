"""Child process for the crash-safety test: writes until it is SIGKILLed.

Usage: ``python crash_child.py <replica path> <first index>``. Prints ``ready``,
then for ever: ``put()`` of record ``k<i>`` and ``W k<i>`` once it returned;
every 5th write also pushes three outbox entries (``p <key/field ...>``
before ``mark_pushed``, ``P <key/field ...>`` after it returned). Every line
is flushed, so a printed line is an acknowledgement the parent may rely on.
"""

from __future__ import annotations

import sys

from replica import Replica


def main() -> None:
    path, first = sys.argv[1], int(sys.argv[2])
    replica = Replica.open(path, node_id="crashy")
    print("ready", flush=True)
    i = first
    while True:
        replica.put("items", f"k{i}", {"i": i, "text": "x" * (i % 50)})
        print(f"W k{i}", flush=True)
        if i % 5 == 4:
            batch = replica.outbox_batch(3)
            keys = " ".join(f"{m.key}/{m.field}" for m in batch)
            print(f"p {keys}", flush=True)
            replica.mark_pushed(m.id for m in batch)
            print(f"P {keys}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
