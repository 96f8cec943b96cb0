"""What replicas and the server say to each other: wire messages, the jobs protocol.

Pure data with one validating decode each, imported by both sides (which never
import each other): the sync messages (`Mutation`, `Change`, the record
naming rules) and the jobs protocol (`JobEvent`, `JOB_ID_HEADER`, the record
and collection names a job writes, `notification_for`). The HTTP endpoints
that carry them are documented in ``docs/protocol.md``.

Imports only `quietsync.conflicts` (and attrs); no I/O, no asyncio.
"""

from quietsync.protocol.errors import WireError
from quietsync.protocol.jobs import (
    FINAL_STATUSES,
    JOB_FIELDS,
    JOB_ID_HEADER,
    JOB_STATUSES,
    MESSAGES,
    MUTED_THREADS,
    NOTIFICATIONS,
    JobEvent,
    JobStatus,
    notification_for,
)
from quietsync.protocol.sync import DELETED_FIELD, KINDS, Change, Kind, Mutation, check_name

__all__ = [
    "DELETED_FIELD",
    "FINAL_STATUSES",
    "JOB_FIELDS",
    "JOB_ID_HEADER",
    "JOB_STATUSES",
    "KINDS",
    "MESSAGES",
    "MUTED_THREADS",
    "NOTIFICATIONS",
    "Change",
    "JobEvent",
    "JobStatus",
    "Kind",
    "Mutation",
    "WireError",
    "check_name",
    "notification_for",
]
