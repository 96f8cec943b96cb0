"""The quietsync server: sync API and jobs API over aiohttp, on SQLite.

Must not import `replica` (only `server.cli`, `server.demo` and `server.testing`,
the layer that wires both sides for people, may).
"""

__all__: list[str] = []
