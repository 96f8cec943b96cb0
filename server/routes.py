"""The URL map of the sync API (documented in ``docs/protocol.md``).

Features add their own routes (`quietsync.server.jobs.views.add_routes`).
"""

from __future__ import annotations

from aiohttp import web

from quietsync.server import views

__all__ = ["add_routes"]


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/health", views.health)
    router.add_post("/v1/push", views.push)
    router.add_get("/v1/pull", views.pull)
    router.add_get("/v1/conflicts", views.conflicts)
    router.add_get("/v1/live", views.live)
