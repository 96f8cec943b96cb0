"""`Workers`: N processes of one server on one listening socket (``quietsync serve --workers N``).

The parent binds and listens on the port once, then forks the workers. Each
worker runs a whole server (its own store connection, live hub and LISTEN
connection) on its inherited copy of that socket, and the kernel hands each
new connection to a worker that accepts it (the idle ones wake first).
Workers share nothing but the database, so this is for PostgreSQL only:
`quietsync.server.serve` refuses it on SQLite, where one process serves one
file.

Why one socket bound by the parent, not SO_REUSEPORT: the port stays open
whatever happens to the workers. The connections a dead worker would have
taken go to the others at once, where with SO_REUSEPORT those hashed to its
socket would wait for its replacement or be reset.

Why fork, not a fresh interpreter: a worker starts from the parent's parsed
configuration (tokens included, so ``--dev`` prints its one token in the
parent) and nothing has to be passed along. The parent forks before it
starts any thread or event loop, and stays without either.

The parent supervises in one loop over a selector (signals reach it through
`signal.set_wakeup_fd`):

1. each worker reports when it serves (its store open, its socket accepting);
   once all have, the parent logs ``Running on http://HOST:PORT`` once;
2. a worker that exits before all have first served failed to start (the
   database refused it, say; it said why on stderr): the parent stops the
   others and exits with that worker's code;
3. after that, a worker that exits (killed, crashed) is logged and replaced
   by a new worker with its number (and node id); a replacement that exits
   before it serves is tried again every `RESTART_DELAY` seconds, so a
   database that is down is not hammered;
4. SIGTERM or SIGINT: every worker gets one SIGTERM and shuts down gracefully
   (aiohttp's shutdown: sockets closed with 1001, requests in flight
   answered), the parent waits for all of them and exits 0.

A worker's log records carry its number (``quietsync.server.app[worker 2]``).
A worker ignores SIGINT (a terminal's Ctrl-C reaches the whole process group:
the parent relays it, once, as SIGTERM), and stops as on SIGTERM if the
parent dies (it watches a pipe only the parent holds open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator

import attrs
from aiohttp.web import GracefulExit

__all__ = ["RESTART_DELAY", "Worker", "Workers"]

log = logging.getLogger("quietsync.workers")

RESTART_DELAY = 1.0
"""Seconds before another try at a worker whose replacement exited before serving."""
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@attrs.frozen
class Worker:
    """What a worker process is given: its number (1-based), the listening socket, the event
    loop to serve on (SIGTERM and the parent's death stop it with `GracefulExit`), and
    `ready`, to call once it serves."""

    number: int
    sock: socket.socket
    loop: asyncio.AbstractEventLoop
    ready: Callable[[], None]


Work = Callable[[Worker], int]
"""Serves as one worker until stopped; returns the worker's exit code."""


@attrs.define
class _Child:
    number: int
    pid: int
    ready: bool = False


def _describe(code: int) -> str:
    """An exit code as `os.waitstatus_to_exitcode` gives it, in words."""
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class Workers:
    """Forks `count` workers running `work` on `sock` and supervises them (module docstring)."""

    def __init__(self, sock: socket.socket, count: int, work: Work, url: str) -> None:
        self._sock = sock
        self._count = count
        self._work = work
        self._url = url
        self._children: dict[int, _Child] = {}
        self._restarts: list[tuple[float, int]] = []  # (when, number)
        self._started = False
        self._stopping = False
        self._code = 0
        self._fds: list[int] = []

    def run(self) -> int:
        """Serve until a stop signal (0), or until a worker fails to start (its code)."""
        with self._pipes(), self._signals():
            for number in range(1, self._count + 1):
                self._spawn(number)
            while self._children or self._restarts:
                for key, _ in self._selector.select(self._next_restart()):
                    if key.fd == self._signal_r:
                        self._on_signals(os.read(self._signal_r, 512))
                    else:
                        self._on_ready(os.read(self._ready_r, 4096))
                self._reap()
                self._restart_due()
        return self._code

    @contextlib.contextmanager
    def _pipes(self) -> Iterator[None]:
        self._signal_r, self._signal_w = self._pipe()
        self._ready_r, self._ready_w = self._pipe()
        self._alive_r, self._alive_w = self._pipe()  # EOF in the workers: the parent is gone
        os.set_blocking(self._signal_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._signal_r, selectors.EVENT_READ)
        self._selector.register(self._ready_r, selectors.EVENT_READ)
        try:
            yield
        finally:
            self._selector.close()
            for fd in self._fds:
                os.close(fd)

    def _pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self._fds += [read, write]
        return read, write

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Signals wake the selector (a Python handler must exist for the wakeup fd to be
        written; the signal numbers are read from it)."""
        watched = (signal.SIGCHLD, *_STOP_SIGNALS)
        before = {sig: signal.signal(sig, lambda *_: None) for sig in watched}
        old_fd = signal.set_wakeup_fd(self._signal_w)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in before.items():
                signal.signal(sig, handler)

    def _spawn(self, number: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(number)  # never returns
        self._children[pid] = _Child(number, pid)
        log.info("worker %d started (pid %d)", number, pid)

    def _child(self, number: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _tag_logs(number)
            self._selector.close()
            for fd in (self._signal_r, self._signal_w, self._ready_r, self._alive_w):
                os.close(fd)
            loop = asyncio.new_event_loop()
            loop.add_signal_handler(signal.SIGTERM, _stop_worker, loop, self._alive_r)
            loop.add_reader(self._alive_r, _stop_worker, loop, self._alive_r)
            code = self._work(Worker(number, self._sock, loop, self._tell_ready))
        except BaseException:
            log.exception("worker %d failed", number)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _tell_ready(self) -> None:
        """In a worker: tell the parent this process serves (a line under PIPE_BUF is
        written whole, whatever the other workers write)."""
        os.write(self._ready_w, b"%d\n" % os.getpid())

    def _next_restart(self) -> float | None:
        """Seconds until the next restart is due (None: none is waiting)."""
        if not self._restarts:
            return None
        return max(0.0, min(self._restarts)[0] - time.monotonic())

    def _restart_due(self) -> None:
        now = time.monotonic()
        for due in [r for r in self._restarts if r[0] <= now]:
            self._restarts.remove(due)
            self._spawn(due[1])

    def _on_signals(self, signums: bytes) -> None:
        if any(sig in _STOP_SIGNALS for sig in signums) and not self._stopping:
            log.info("stopping %d worker(s)", len(self._children))
            self._stop()

    def _on_ready(self, lines: bytes) -> None:
        for pid in map(int, lines.split()):
            child = self._children.get(pid)
            if child is None:
                continue  # it exited since
            child.ready = True
            log.info("worker %d serving (pid %d)", child.number, pid)
        everyone = len(self._children) == self._count
        if not self._started and everyone and all(c.ready for c in self._children.values()):
            self._started = True
            log.info("Running on %s with %d workers (Press CTRL+C to quit)", self._url, self._count)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is not None:
                self._exited(child, os.waitstatus_to_exitcode(status))

    def _exited(self, child: _Child, code: int) -> None:
        how = _describe(code)
        if self._stopping:
            log.info("worker %d (pid %d) stopped (%s)", child.number, child.pid, how)
            if code and not self._code:
                self._code = code if code > 0 else 1
        elif not self._started:
            log.error("worker %d (pid %d) failed to start (%s)", child.number, child.pid, how)
            self._code = code if code > 0 else 1
            self._stop()
        else:
            delay = 0.0 if child.ready else RESTART_DELAY
            log.warning(
                "worker %d (pid %d) exited (%s); starting another in %.0f s",
                *(child.number, child.pid, how, delay),
            )
            self._restarts.append((time.monotonic() + delay, child.number))

    def _stop(self) -> None:
        self._stopping = True
        self._restarts.clear()
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _tag_logs(number: int) -> None:
    """In a worker: its log records name it (``quietsync.server.app[worker 2]: ...``)."""
    make = logging.getLogRecordFactory()

    def tagged(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.name = f"{record.name}[worker {number}]"
        return record

    logging.setLogRecordFactory(tagged)


def _stop_worker(loop: asyncio.AbstractEventLoop, alive: int) -> None:
    """SIGTERM or the parent's death: stop once, gracefully (further SIGTERMs ignored)."""
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    loop.remove_reader(alive)
    raise GracefulExit()
