"""The quietsync server: sync API (and, later, jobs API) over aiohttp, on SQLite.

`create_app(ServerConfig(...))` builds the aiohttp application; `quietsync
serve` runs it; `quietsync.testing.running_server` starts it inside a test. The
wire protocol is documented in ``docs/protocol.md``.

Must not import `quietsync.replica` (only the wiring package `quietsync` may
import both sides).
"""

from quietsync.server.app import create_app
from quietsync.server.config import ServerConfig
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import Store
from quietsync.server.sync import SyncService

__all__ = ["SQLiteStore", "ServerConfig", "Store", "SyncService", "create_app"]
