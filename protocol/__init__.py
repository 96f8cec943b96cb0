"""What replicas and the server say to each other: wire messages, the jobs protocol.

Pure data with one schema and one validating decode each, imported by both
sides (which never import each other): the record messages (`Mutation`,
`Change`, the naming rules: `sync`), the sync API's answers (`messages`) and
the jobs protocol (`JobEvent`, `JOB_ID_HEADER`, the record and collection
names a job writes, `notification_for`: `jobs`), and the nesting limit of
values both sides enforce (`MAX_NESTING`: `nesting`); and the rate-limited
failure log both sides' retry loops write through (`ratelog`). The HTTP endpoints
that carry them are documented in ``docs/protocol.md``.

Imports only `quietsync.conflicts` (and attrs, msgspec); no I/O, no asyncio.
"""

from quietsync.protocol.errors import NotJsonError, WireError
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
from quietsync.protocol.messages import (
    OUTCOMES,
    WireChanges,
    WireConflict,
    WireConflictsAnswer,
    WireHello,
    WireLive,
    WirePull,
    WirePullAnswer,
    WirePushAnswer,
    WireResult,
    WireSide,
    WireSpacesChanged,
    conflict_from_wire,
    conflict_to_wire,
    decode_answer,
)
from quietsync.protocol.nesting import MAX_NESTING, nested_too_deep, too_deep_message
from quietsync.protocol.spaces import (
    PRIVATE_PREFIX,
    REVOKED_CLOSE_CODE,
    ROLES,
    SHARED_PREFIX,
    SPACE_ID_MAX,
    Role,
    WireMember,
    WireMembersAnswer,
    WireNewSpace,
    WireRoleChange,
    WireSpace,
    WireSpacesAnswer,
    private_space,
    role_allows,
)
from quietsync.protocol.sync import (
    DELETED_FIELD,
    KINDS,
    Change,
    DecodedPush,
    Kind,
    Mutation,
    Unreadable,
    WireChange,
    WireWrite,
    check_name,
    decode_push,
    encode,
)

__all__ = [
    "DELETED_FIELD",
    "FINAL_STATUSES",
    "JOB_FIELDS",
    "JOB_ID_HEADER",
    "JOB_STATUSES",
    "KINDS",
    "MAX_NESTING",
    "MESSAGES",
    "MUTED_THREADS",
    "NOTIFICATIONS",
    "OUTCOMES",
    "PRIVATE_PREFIX",
    "REVOKED_CLOSE_CODE",
    "ROLES",
    "SHARED_PREFIX",
    "SPACE_ID_MAX",
    "Change",
    "DecodedPush",
    "JobEvent",
    "JobStatus",
    "Kind",
    "Mutation",
    "NotJsonError",
    "Role",
    "Unreadable",
    "WireChange",
    "WireChanges",
    "WireConflict",
    "WireConflictsAnswer",
    "WireError",
    "WireHello",
    "WireLive",
    "WireMember",
    "WireMembersAnswer",
    "WireNewSpace",
    "WirePull",
    "WirePullAnswer",
    "WirePushAnswer",
    "WireResult",
    "WireRoleChange",
    "WireSide",
    "WireSpace",
    "WireSpacesAnswer",
    "WireSpacesChanged",
    "WireWrite",
    "check_name",
    "conflict_from_wire",
    "conflict_to_wire",
    "decode_answer",
    "decode_push",
    "encode",
    "nested_too_deep",
    "notification_for",
    "private_space",
    "role_allows",
    "too_deep_message",
]
