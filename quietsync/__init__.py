"""quietsync: offline-first replication for Python apps.

The names an app reaches for first are importable from here::

    from quietsync import Replica, SyncClient, SpacesClient, StreamTracker, ChatPane

Everything else lives in the sub-packages, each with its own ``__all__``:

* `quietsync.conflicts`: the merge core (HLC, LWW merge, CRDT text); pure;
* `quietsync.protocol`: the wire messages the replica and the server share; pure;
* `quietsync.replica`: the client (local replica, sync client, stream tracker);
* `quietsync.server`: the sync server (`create_app`, `ServerConfig`, jobs);
* `quietsync.testing`: a real server on a free loopback port, for test suites.

The names below are imported on first use (PEP 562), not when the package is:
``import quietsync.conflicts`` must not pull in aiohttp, sqlite3 or asyncio,
and Python imports this module first whichever sub-package is asked for.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

__all__ = [
    "ChatPane",
    "Notifications",
    "QuietsyncError",
    "Replica",
    "SpaceView",
    "SpacesClient",
    "StreamTracker",
    "SyncClient",
    "SyncStatus",
    "ThreadSession",
    "__version__",
]

try:
    __version__ = version("quietsync")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

_HOMES = {
    "ChatPane": "quietsync.replica",
    "Notifications": "quietsync.replica",
    "QuietsyncError": "quietsync.conflicts",
    "Replica": "quietsync.replica",
    "SpaceView": "quietsync.replica",
    "SpacesClient": "quietsync.replica",
    "StreamTracker": "quietsync.replica",
    "SyncClient": "quietsync.replica",
    "SyncStatus": "quietsync.replica",
    "ThreadSession": "quietsync.replica",
}

if TYPE_CHECKING:
    from quietsync.conflicts import QuietsyncError
    from quietsync.replica import (
        ChatPane,
        Notifications,
        Replica,
        SpacesClient,
        SpaceView,
        StreamTracker,
        SyncClient,
        SyncStatus,
        ThreadSession,
    )


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'quietsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
