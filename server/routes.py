"""The URL map of the sync API (documented in ``docs/protocol.md``).

Features add their own routes (`quietsync.server.jobs.views.add_routes`).
The machine-readable description of every route, ``openapi.json`` beside this
module, is served as it is at `OPENAPI_PATH` (no token: it describes, it
reveals nothing); ``tests/server/test_openapi.py`` keeps it equal to the routes.
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

from quietsync.server import views
from quietsync.server.spaces import views as space_views

__all__ = ["OPENAPI_PATH", "add_routes", "openapi_description"]

OPENAPI_PATH = "/v1/openapi.json"


@functools.cache
def openapi_description() -> bytes:
    """The OpenAPI 3.1 description of the HTTP API, as shipped in the package."""
    return resources.files("quietsync.server").joinpath("openapi.json").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_description(), content_type="application/json")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/health", views.health)
    router.add_get(OPENAPI_PATH, openapi)
    router.add_post("/v1/push", views.push)
    router.add_get("/v1/pull", views.pull)
    router.add_get("/v1/conflicts", views.conflicts)
    router.add_get("/v1/live", views.live)
    space_views.add_routes(router)
