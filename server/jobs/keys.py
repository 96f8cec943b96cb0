"""The jobs feature's typed app key (the core's keys are in `quietsync.server.keys`)."""

from __future__ import annotations

from aiohttp import web

from quietsync.server.jobs.runner import JobRunner

__all__ = ["JOBS_KEY"]

JOBS_KEY = web.AppKey("jobs", JobRunner)
"""The app's `JobRunner` (set once the store is open, see `quietsync.server.jobs.feature`)."""
