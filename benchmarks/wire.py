"""The sync wire's cost against ``json``, measured in the same run.

* **decode a push**: a ``{"mutations": [...]}`` body of N lww writes (text
  with accents, emoji and astral-plane characters; a stamp of its own each,
  the worst case) into checked `Mutation`s (``decode_push(body).writes``),
  against a bare ``json.loads`` of such a body (no check, no objects): what
  validation and the domain objects cost. And checked only, in their wire
  form (``decode_push(body)``): what the server's push of plain overwrites
  pays (`quietsync.server.overwrite`).
* **encode a page**: N changes as `WirePullAnswer` bytes with `encode`,
  against ``json.dumps`` of the same page as dicts.

Run: ``python -m benchmarks.wire [--n 1000]``.
"""

from __future__ import annotations

import argparse
import json

from benchmarks._table import best_of, print_table
from quietsync.conflicts import Clock
from quietsync.protocol import Change, decode_push, encode
from quietsync.protocol.messages import WirePullAnswer

__all__ = ["main"]

TEXT = "Crème brûlée 🍮 for \U0001d504lice, n\u0308aïve café"  # astral, combining


def push_body(n: int) -> bytes:
    clock = Clock("n1")
    mutations = [
        {
            "id": f"n1:{i + 1}",
            "collection": "notes",
            "key": f"note-{i:06d}",
            "field": "title",
            "kind": "lww",
            "value": f"{TEXT} #{i}",
            "stamp": str(clock.now()),
            "base": None,
        }
        for i in range(n)
    ]
    return json.dumps({"mutations": mutations}, ensure_ascii=False).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="writes per push / changes per page")
    args = parser.parse_args(argv)
    body = push_body(args.n)
    writes = decode_push(body).writes
    assert len(writes) == args.n and all(not isinstance(w, Exception) for w in writes)
    changes = [Change.from_json({**w.to_json(), "seq": i + 1}) for i, w in enumerate(writes)]  # type: ignore[union-attr]
    page_dicts = {
        "changes": [c.to_json() for c in changes],
        "cursor": args.n,
        "has_more": False,
        "history": "h1",
    }
    page = WirePullAnswer([c.to_wire() for c in changes], args.n, False, "h1")
    assert json.loads(encode(page)) == json.loads(json.dumps(page_dicts))

    # A fresh body per run: `HLC.parse` remembers recent stamps, and decoding
    # one body again would time those cache hits instead of the parse.
    fresh = iter([push_body(args.n) for _ in range(60)])
    raw_decode = best_of(20, lambda: json.loads(next(fresh)))
    ours_decode = best_of(20, lambda: decode_push(next(fresh)).writes)
    wire_decode = best_of(20, lambda: decode_push(next(fresh)))
    raw_encode = best_of(20, lambda: json.dumps(page_dicts, ensure_ascii=False).encode())
    ours_encode = best_of(20, lambda: encode(page))
    print_table(
        f"sync wire vs json ({len(body):,} byte push; best of 20; ratio = json time / ours)",
        ["operation", "n", "json ms", "quietsync ms", "ratio"],
        [
            [
                "decode a push",
                args.n,
                raw_decode * 1e3,
                ours_decode * 1e3,
                raw_decode / ours_decode,
            ],
            [
                "decode a push, wire form",
                args.n,
                raw_decode * 1e3,
                wire_decode * 1e3,
                raw_decode / wire_decode,
            ],
            [
                "encode a page",
                args.n,
                raw_encode * 1e3,
                ours_encode * 1e3,
                raw_encode / ours_encode,
            ],
        ],
    )


if __name__ == "__main__":
    main()
