"""Every error the server raises, and the one place they become HTTP answers.

    QuietsyncError                      (conflicts.errors)
    └── ServerError                     base; carries `status` and a machine `code`
        ├── ConfigError                 bad tokens file / environment / limits (startup)
        ├── StoreError                  the storage backend failed (500; sqlite3 errors wrapped)
        │   ├── JobTakenError           another server process ended this process's job
        │   └── StoreUnavailableError   the database cannot be reached now: retry (503)
        └── RequestError                a request refused as a whole, no state change (4xx)
            ├── UnauthorizedError       missing or unknown bearer token (401)
            ├── MalformedJsonError      body is not JSON (400)
            ├── BadRequestError         JSON of the wrong shape, bad query parameter (400)
            ├── BodyTooLargeError       body over `max_body_bytes` (413)
            ├── BatchTooLargeError      more mutations than `max_batch` (413)
            ├── MutationsRefusedError   some mutations are bad; names EVERY one (422)
            ├── InvalidJobRequestError  a jobs request of the wrong shape, bad offset (422)
            ├── UnknownJobError         no such job for this user, or past retention (404)
            ├── JobRunningError         the message already has a streaming job (409)
            ├── TooManyJobsError        the user has `JobsConfig.max_per_user` jobs streaming (429)
            ├── SpaceNotFoundError      no such space, or the caller is not a member (404)
            ├── ForbiddenError          a member without the role the request needs (403)
            ├── PrivateSpaceError       a membership change on a private space (403)
            ├── LastAdminError          the change would leave a space without an admin (409)
            ├── TooManySpacesError      the user is in `max_spaces_per_user` spaces (429)
            └── ResyncRequiredError     the replica's cursor means nothing here: resync (409)

Handlers never build error responses themselves: they raise, and the error
middleware (`server.views.error_middleware`) calls `error_body` on the way out.
The body is always ``{"error": {"code": ..., "message": ...}}``, plus
``"refused": [...]`` for `MutationsRefusedError` and ``"resync": {"reason":
..., "history": ...}`` for `ResyncRequiredError`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from quietsync.conflicts.errors import QuietsyncError

__all__ = [
    "BadRequestError",
    "BatchTooLargeError",
    "BodyTooLargeError",
    "ConfigError",
    "ForbiddenError",
    "InvalidJobRequestError",
    "JobRunningError",
    "JobTakenError",
    "LastAdminError",
    "MalformedJsonError",
    "MutationsRefusedError",
    "PrivateSpaceError",
    "Refusal",
    "RequestError",
    "ResyncRequiredError",
    "ServerError",
    "SpaceNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "TooManyJobsError",
    "TooManySpacesError",
    "UnauthorizedError",
    "UnknownJobError",
    "error_body",
]


class ServerError(QuietsyncError):
    """Base class of every server error; `status` and `code` say how it goes on the wire."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"


class ConfigError(ServerError):
    """The server cannot start with this configuration."""

    code = "config_error"


class StoreError(ServerError):
    """The storage backend failed; the transaction was rolled back."""

    code = "store_error"


class JobTakenError(StoreError):
    """A job's write found the job ended by another server process (which found this one
    gone: its connection to the database was lost); the write was rolled back."""

    code = "job_taken"


class StoreUnavailableError(StoreError):
    """The connection to the database was lost, or cannot be opened yet: the request's
    transaction did not commit, or its outcome is unknown (a lost COMMIT). Retrying the
    same request is safe: a push's mutation ids make it apply once."""

    status = 503
    code = "store_unavailable"


class RequestError(ServerError):
    """A request refused as a whole; nothing was changed."""

    status = 400
    code = "bad_request"


class UnauthorizedError(RequestError):
    status = 401
    code = "unauthorized"


class MalformedJsonError(RequestError):
    code = "malformed_json"


class BadRequestError(RequestError):
    code = "bad_request"


class BodyTooLargeError(RequestError):
    status = 413
    code = "body_too_large"


class BatchTooLargeError(RequestError):
    status = 413
    code = "batch_too_large"


class InvalidJobRequestError(RequestError):
    status = 422
    code = "invalid_job_request"


class UnknownJobError(RequestError):
    """Also answers for another user's job: a job id reveals nothing about others."""

    status = 404
    code = "unknown_job"


class JobRunningError(RequestError):
    status = 409
    code = "job_running"


class TooManyJobsError(RequestError):
    status = 429
    code = "too_many_jobs"


class SpaceNotFoundError(RequestError):
    """Also answers for a space the caller is not a member of: an id reveals nothing."""

    status = 404
    code = "space_not_found"

    def __init__(self) -> None:
        super().__init__("no such space (or you are not a member of it)")


class ForbiddenError(RequestError):
    status = 403
    code = "forbidden"


class PrivateSpaceError(RequestError):
    status = 403
    code = "private_space"


class LastAdminError(RequestError):
    status = 409
    code = "last_admin"


class TooManySpacesError(RequestError):
    status = 429
    code = "too_many_spaces"


class ResyncRequiredError(RequestError):
    """The replica's cursor cannot be continued here; it must resync (``docs/protocol.md``).

    `reason` is ``history_changed`` (the server is another history: restored
    from a backup, or reset), ``cursor_ahead`` (the cursor is past the user's
    head: the server went back) or ``cursor_too_old`` (below the tombstone
    horizon: a delete the replica may not have seen was compacted away).
    `history` is the server's history id.
    """

    status = 409
    code = "resync"
    _TEXT: ClassVar[dict[str, str]] = {
        "history_changed": "the server's history is not the one this replica knows "
        "(restored from a backup, or reset)",
        "cursor_ahead": "the cursor is past the server's head (the server went back in time)",
        "cursor_too_old": "the cursor is older than the server's tombstone horizon",
    }

    def __init__(self, reason: str, history: str) -> None:
        self.reason = reason
        self.history = history
        super().__init__(f"resync: {self._TEXT[reason]}; pull from 0 in history {history}")


@attrs.frozen
class Refusal:
    """Why mutation number `index` (id `id`, None if it had none) of a batch was refused.

    `code` is one of ``invalid_mutation``, ``clock_drift``, ``kind_mismatch``,
    ``bad_crdt_update``; `reason` is the human text.
    """

    index: int
    id: str | None
    code: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "code": self.code, "reason": self.reason}


class MutationsRefusedError(RequestError):
    """At least one mutation of a batch is bad; the whole batch was refused."""

    status = 422
    code = "mutations_refused"

    def __init__(self, refused: list[Refusal], batch_size: int) -> None:
        self.refused = refused
        first = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        super().__init__(
            f"{len(refused)} of {batch_size} mutations refused; nothing was applied. "
            f"First: mutation {first.index} ({first.id}): {first.reason}{more}"
        )


def error_body(exc: ServerError) -> dict[str, Any]:
    """The JSON body answering `exc` (see the module docstring)."""
    body: dict[str, Any] = {"error": {"code": exc.code, "message": str(exc)}}
    if isinstance(exc, MutationsRefusedError):
        body["refused"] = [r.to_json() for r in exc.refused]
    if isinstance(exc, ResyncRequiredError):
        body["resync"] = {"reason": exc.reason, "history": exc.history}
    return body
