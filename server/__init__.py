"""The quietsync server: the sync API over aiohttp, on SQLite, with its features.

`create_app(ServerConfig(...), [jobs_feature()])` builds the aiohttp
application; ``quietsync serve`` runs it; `quietsync.testing.running_server`
starts it inside a test. The wire protocol is documented in
``docs/protocol.md``. The jobs API is a feature of its own
(`quietsync.server.jobs`).

Must not import `quietsync.replica` (only the wiring package `quietsync` may
import both sides).
"""

from quietsync.server.app import Feature, create_app
from quietsync.server.config import ServerConfig
from quietsync.server.jobs import JobsConfig, jobs_feature
from quietsync.server.sqlite_store import SQLiteStore
from quietsync.server.store import Store
from quietsync.server.sync import SyncService

__all__ = [
    "Feature",
    "JobsConfig",
    "SQLiteStore",
    "ServerConfig",
    "Store",
    "SyncService",
    "create_app",
    "jobs_feature",
]
