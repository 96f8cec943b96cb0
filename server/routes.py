"""The URL map of the sync and jobs API (documented in ``docs/protocol.md``)."""

from __future__ import annotations

from aiohttp import web

from quietsync.server import job_views, views

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/health", views.health)
    app.router.add_post("/v1/push", views.push)
    app.router.add_get("/v1/pull", views.pull)
    app.router.add_get("/v1/conflicts", views.conflicts)
    app.router.add_get("/v1/live", views.live)
    app.router.add_post("/v1/jobs", job_views.start_job)
    app.router.add_get("/v1/jobs/{job_id}", job_views.poll_job)
    app.router.add_get("/v1/jobs/{job_id}/events", job_views.job_events)
    app.router.add_post("/v1/jobs/{job_id}/abort", job_views.abort_job)
