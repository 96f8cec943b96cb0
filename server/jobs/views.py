"""HTTP handlers of the jobs API (``docs/protocol.md``, "Jobs").

Handlers check the request and call `server.jobs.runner.JobRunner`; they raise
`server.errors.RequestError`s and the error middleware answers them. Event
streams (the events endpoint and a hybrid start's body) are one
``data: <JobEvent JSON>`` line and a blank line per event: a snapshot first,
then live events with keepalives, ending after the final ``status`` event.
A reader that goes away never stops the job. A start names its space
(``?space=``, the caller's private space without it: `in_space`); every other
endpoint finds the space from the job, and answers only the members of that
space (`quietsync.server.jobs.access`). A reader who loses the space has
their stream ended at once, without a ``status`` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web

from quietsync.protocol import JOB_ID_HEADER, JobEvent, Role, WireError, check_name
from quietsync.server.errors import InvalidJobRequestError
from quietsync.server.jobs.access import authorize
from quietsync.server.jobs.job import Job, Watch, no_such_job
from quietsync.server.jobs.keys import JOBS_KEY
from quietsync.server.jobs.runner import JobSpec
from quietsync.server.keys import USER_KEY
from quietsync.server.spaces.access import in_space
from quietsync.server.views import json_body

__all__ = ["abort_job", "add_routes", "job_events", "poll_job", "start_job"]

_MODES = ("background", "hybrid")
_MEMBERS = frozenset({"thread_id", "message_id", "input", "mode"})

log = logging.getLogger(__name__)


def _spec_of(body: Any) -> tuple[JobSpec, str]:
    """Validate a start body; `InvalidJobRequestError` names the first bad member."""
    if not isinstance(body, dict):
        raise InvalidJobRequestError(
            'a job body must be a JSON object {"thread_id", "message_id", "input", "mode"}'
        )
    unknown = sorted(set(body) - _MEMBERS)
    if unknown:
        raise InvalidJobRequestError(f"unknown members {unknown}")
    ids = {}
    for member in ("thread_id", "message_id"):
        try:
            ids[member] = _unicode(member, check_name("key", body.get(member)))
        except WireError as exc:
            raise InvalidJobRequestError(f"{member!r} must be a record key: {exc}") from exc
    text, mode = body.get("input"), body.get("mode")
    if not isinstance(text, str):
        raise InvalidJobRequestError(f"'input' must be a string, got {text!r:.80}")
    _unicode("input", text)
    if mode not in _MODES:
        raise InvalidJobRequestError(f"'mode' must be one of {', '.join(_MODES)}, got {mode!r}")
    return JobSpec(ids["thread_id"], ids["message_id"], text), mode


def _unicode(member: str, text: str) -> str:
    """`text` if it is Unicode text: a lone surrogate (a JSON escape like ``\\ud800``) is not,
    and could never be stored or sent (the job would echo it into its reply)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJobRequestError(
                f"{member!r} holds a lone surrogate at index {exc.start}: not Unicode text"
            ) from None
    return text


def _offset(request: web.Request, length: int) -> int:
    """The ``offset`` query parameter, checked against a content of `length` characters."""
    text = request.query.get("offset", "0")
    if not text.isascii() or not text.isdigit():
        raise InvalidJobRequestError(f"'offset' must be an integer >= 0, got {text!r}")
    if len(text) > len(str(length)) or int(text) > length:  # no huge int()
        raise InvalidJobRequestError(f"'offset' {text:.30} is beyond the content's length {length}")
    return int(text)


async def _job_of(request: web.Request, needed: Role) -> Job:
    """The job the path names, if the caller's role in its space allows `needed`."""
    job = await request.app[JOBS_KEY].get(request.match_info["job_id"])
    await authorize(request, job, needed)
    return job


async def start_job(request: web.Request) -> web.StreamResponse:
    spec, mode = _spec_of(await json_body(request))
    runner, user = request.app[JOBS_KEY], request[USER_KEY]
    space = await in_space(request, "write", lambda space: space)  # before 409/429: see access
    job = await runner.create(user, space, spec)
    if mode == "background":
        runner.run(job)
        body = {"job_id": job.id, "status": job.row.status, "stamp": str(job.row.stamp)}
        return web.json_response(body, status=202)
    watch, snapshot = job.watch(user, _alive(request))
    try:
        response = _event_response(request, {JOB_ID_HEADER: job.id})
        try:
            await response.prepare(request)  # the header goes out before the first token
        finally:
            runner.run(job)
        return await _stream(request, response, snapshot, watch)
    finally:
        job.unwatch(watch)


async def poll_job(request: web.Request) -> web.Response:
    job = await _job_of(request, "read")
    offset = _offset(request, len(job.content))
    return web.json_response(
        {
            "job_id": job.id,
            "thread_id": job.row.thread_id,
            "message_id": job.row.message_id,
            "status": job.row.status,
            "offset": offset,
            "content_delta": job.content[offset:],
            "content_length": len(job.content),
            "error": job.row.error,
            "stamp": str(job.row.stamp),
        }
    )


async def job_events(request: web.Request) -> web.StreamResponse:
    """The job's events from ``offset``. The reader is registered before the access check,
    so a removal committed after the check ends the stream (`Watch.revoke`); until the
    check passed, nothing about the job is answered, not even a bad offset."""
    job = await request.app[JOBS_KEY].get(request.match_info["job_id"], follow=True)
    watch, whole = job.watch(request[USER_KEY], _alive(request))
    try:
        await authorize(request, job, "read")
        if watch.revoked:
            raise no_such_job(job.id)
        offset = _offset(request, whole.content_length)
        snapshot = attrs.evolve(whole, offset=offset, text=whole.text[offset:])
        response = _event_response(request, {})
        await response.prepare(request)
        return await _stream(request, response, snapshot, watch)
    finally:
        job.unwatch(watch)


async def abort_job(request: web.Request) -> web.Response:
    job = await _job_of(request, "write")
    status = await request.app[JOBS_KEY].abort(job)
    return web.json_response({"job_id": job.id, "status": status})


def _alive(request: web.Request) -> Callable[[], bool]:
    """Whether the request's connection is still open (a closed one watches nothing)."""
    return lambda: request.transport is not None and not request.transport.is_closing()


def _event_response(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    return web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
    )


async def _stream(
    request: web.Request, response: web.StreamResponse, first: JobEvent, watch: Watch
) -> web.StreamResponse:
    """Send `first`, then the watch's events (with keepalives) up to the final status.

    A reader may leave at any time (a view closed, an app killed): that ends
    this stream quietly and never the job, which goes on writing its message.
    A revoked reader (`Watch.revoke`) is sent nothing more.
    """
    keepalive = request.app[JOBS_KEY].config.keepalive
    event: JobEvent | None = first
    try:
        while event is not None and not watch.revoked:
            await response.write(b"data: " + json.dumps(event.to_json()).encode() + b"\n\n")
            if event.type == "status":
                break
            try:
                event = await asyncio.wait_for(watch.queue.get(), keepalive)
            except TimeoutError:
                event = JobEvent("keepalive", first.job_id)
        await response.write_eof()
    except ConnectionResetError:
        log.debug("reader of job %s left mid-stream", first.job_id)
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    """The jobs endpoints (``docs/protocol.md``, "Jobs")."""
    router.add_post("/v1/jobs", start_job)
    router.add_get("/v1/jobs/{job_id}", poll_job)
    router.add_get("/v1/jobs/{job_id}/events", job_events)
    router.add_post("/v1/jobs/{job_id}/abort", abort_job)
