"""Who may see which job: the members of its space, by the spaces' own check.

A job lives in one space (`JobRow.space`). Starting one needs ``write`` in
the space the request names (`quietsync.server.spaces.access.in_space`);
reading one (poll, events) needs ``read`` in the job's space, aborting it
``write``. A caller who is not a member of the job's space gets exactly what
an unknown job id gets (404 ``unknown_job``, same message), so a job id
reveals nothing: not that the job exists, nor its space, nor its length. A
member below the role needed gets 403 ``forbidden``: they know the space.

The check runs on the store thread, like every access check
(`SpaceService.require`), so it sees every membership change committed
before it; one committed after it reaches an open event stream through
`JobRunner.revoke`.
"""

from __future__ import annotations

from aiohttp import web

from quietsync.protocol import Role
from quietsync.server.errors import SpaceNotFoundError
from quietsync.server.jobs.job import Job, no_such_job
from quietsync.server.keys import CORE_KEY, SPACES_KEY, USER_KEY

__all__ = ["authorize"]


async def authorize(request: web.Request, job: Job, needed: Role) -> None:
    """Return if the caller's role in `job`'s space allows `needed`; else the answer."""
    user, spaces, space = request[USER_KEY], request.app[SPACES_KEY], job.row.space
    try:
        await request.app[CORE_KEY].run(lambda: spaces.require(user, space, needed))
    except SpaceNotFoundError:
        raise no_such_job(job.id) from None
