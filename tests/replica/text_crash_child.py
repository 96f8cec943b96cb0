"""Child process for the text crash test: edits one text field until it is SIGKILLed.

Usage: ``python text_crash_child.py <replica path>``. Prints ``ready``, then
applies `edit(i)` for i = the number of edits already in the file, onwards,
printing ``E <i>`` once each edit returned (an acknowledgement the parent may
rely on). Compaction is made frequent so kills land in it too.
"""

from __future__ import annotations

import sys

from quietsync.replica import Replica, texts


def edit(i: int, current: str) -> tuple[int, int, str]:
    """The i-th edit, as ``(index, delete_count, insert)``, against the text `current`."""
    if i % 5 == 4 and len(current) > 3:
        return (1, 2, "")
    return (len(current) // 2 if i % 3 else len(current), 0, f"{i}é😀𝔄|")


def apply(op: tuple[int, int, str], current: str) -> str:
    index, count, insert = op
    return current[:index] + insert + current[index + count :]


def main() -> None:
    path = sys.argv[1]
    texts.COMPACT_ROWS = 7  # fold every 7 edits: kills land in and right after compactions
    replica = Replica.open(path, node_id="crashy")
    done = int((replica.get("docs", "meta") or {}).get("edits", 0))
    print("ready", flush=True)
    i = done
    while True:
        current = (replica.get("docs", "d") or {}).get("body", "")
        with replica.transaction():
            replica.text_edits("docs", "d", "body", [edit(i, current)])
            replica.put("docs", "meta", {"edits": i + 1})
        print(f"E {i}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
