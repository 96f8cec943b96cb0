"""The quietsync server: sync API (and, later, jobs API) over aiohttp, on SQLite.

`create_app(ServerConfig(...))` builds the aiohttp application; `quietsync
serve` runs it; `server.testing.running_server` starts it inside a test. The
wire protocol is documented in ``docs/protocol.md``.

Must not import `replica` (only `server.cli`, `server.demo` and `server.testing`,
the layer that wires both sides for people, may).
"""

from server.app import create_app
from server.config import ServerConfig
from server.sqlite_store import SQLiteStore
from server.store import Store
from server.sync import SyncService

__all__ = ["SQLiteStore", "ServerConfig", "Store", "SyncService", "create_app"]
