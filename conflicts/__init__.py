"""The merge core of quietsync: pure functions over immutable data, no I/O.

Hybrid logical clocks (`HLC`, `Clock`), field-level last-writer-wins with
conflict detection and identical-content suppression (`merge_field`), custom
resolvers (`Resolvers`), CRDT text helpers over pycrdt (`CrdtText`,
`initial_text_update`), the wire messages (`Mutation`, `Change`), and what
both sides share about server jobs (`JobEvent`, `notification_for`).

This package must not import `replica`, `server`, asyncio, sqlite or aiohttp.
"""

from quietsync.conflicts.canonical import canonical_equal, canonical_json, encode_normalized
from quietsync.conflicts.conflict import Conflict, FieldRef, Side
from quietsync.conflicts.crdt import CrdtText, initial_text_update, merge_text_updates, text_of
from quietsync.conflicts.errors import (
    ClockDriftError,
    CrdtUpdateError,
    KindMismatchError,
    QuietsyncError,
    WireError,
)
from quietsync.conflicts.hlc import HLC, Clock, validate_node_id, wall_clock_ms
from quietsync.conflicts.jobs import (
    FINAL_STATUSES,
    JOB_FIELDS,
    JOB_STATUSES,
    MESSAGES,
    MUTED_THREADS,
    NOTIFICATIONS,
    JobEvent,
    JobStatus,
    notification_for,
)
from quietsync.conflicts.lww import FieldWrite, Merge, Outcome, merge_field, overwrites
from quietsync.conflicts.resolvers import Resolver, Resolvers, derived_stamp
from quietsync.conflicts.wire import DELETED_FIELD, KINDS, Change, Kind, Mutation, check_name

__all__ = [
    "DELETED_FIELD",
    "FINAL_STATUSES",
    "HLC",
    "JOB_FIELDS",
    "JOB_STATUSES",
    "KINDS",
    "MESSAGES",
    "MUTED_THREADS",
    "NOTIFICATIONS",
    "Change",
    "Clock",
    "ClockDriftError",
    "Conflict",
    "CrdtText",
    "CrdtUpdateError",
    "FieldRef",
    "FieldWrite",
    "JobEvent",
    "JobStatus",
    "Kind",
    "KindMismatchError",
    "Merge",
    "Mutation",
    "Outcome",
    "QuietsyncError",
    "Resolver",
    "Resolvers",
    "Side",
    "WireError",
    "canonical_equal",
    "canonical_json",
    "check_name",
    "derived_stamp",
    "encode_normalized",
    "initial_text_update",
    "merge_field",
    "merge_text_updates",
    "notification_for",
    "overwrites",
    "text_of",
    "validate_node_id",
    "wall_clock_ms",
]
