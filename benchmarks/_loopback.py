"""Loopback ports: serving a benchmark's own baseline app, and holding a port for a server."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from aiohttp import web

__all__ = ["PortHold", "serve_on_loopback"]


@asynccontextmanager
async def serve_on_loopback(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 (a free port) and yield its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class PortHold:
    """A free port of 127.0.0.1 that no other process can take while it is held.

    For a server that must listen on a port known in advance (a subprocess told
    ``--port N``, or one restarted on the same URL). Asking the kernel for a free
    port and closing the socket before the server binds it leaves a moment in
    which anyone else (another test worker, another test run) may be given that
    port, and the server then fails to start. Here the socket stays bound, never
    listening, with SO_REUSEADDR, until `close`: on Linux no ``bind(port 0)`` nor
    outgoing connection of any process gets the port meanwhile, a connection to
    it is refused until a server listens, and a server that sets SO_REUSEADDR too
    (asyncio's default on POSIX, so aiohttp and ``quietsync serve``) may still
    bind and listen on it, be killed, and listen on it again. Elsewhere (BSD
    rules would refuse the server's bind) the port is released at once: free
    when asked for, as before, not held.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = socket.socket()
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(("127.0.0.1", 0))
            self.port: int = self._sock.getsockname()[1]
        except BaseException:
            self.close()
            raise
        if not sys.platform.startswith("linux"):
            self.close()

    def close(self) -> None:
        """Release the port (a server listening on it keeps it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> PortHold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
