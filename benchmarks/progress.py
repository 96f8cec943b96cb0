"""A progress bar for long benchmark runs, on stderr so tables on stdout stay clean.

On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints a line
only when a step starts, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 24


class Progress:
    """Counts finished steps out of `total`; `start(label)` names the one under way."""

    def __init__(self, total: int, *, stream: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.perf_counter()
        self._label = ""

    def start(self, label: str) -> None:
        self._label = label
        if self._tty:
            self._draw()
        else:
            print(f"[{self.done + 1}/{self.total}] {label} ...", file=self._stream, flush=True)

    def advance(self) -> None:
        self.done = min(self.done + 1, self.total)
        if self._tty:
            self._draw()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\r" + " " * 79 + "\r")
            self._stream.flush()

    def _draw(self) -> None:
        filled = _WIDTH * self.done // self.total
        elapsed = time.perf_counter() - self._started
        line = (
            f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {self.done}/{self.total} "
            f"{elapsed:5.1f}s {self._label}"
        )
        self._stream.write("\r" + line[:79].ljust(79))
        self._stream.flush()
