"""The merge core of quietsync: pure functions over immutable data, no I/O.

Hybrid logical clocks (`HLC`, `Clock`), field-level last-writer-wins with
conflict detection and identical-content suppression (`merge_field`), the
delete-versus-edit rule (`uncovered_edits`), custom resolvers (`Resolvers`),
CRDT text helpers over pycrdt (`CrdtText`, `initial_text_update`,
`merge_text_state`), canonical JSON (`canonical_equal`), and the `Conflict`
record.

This package knows nothing of the wire, of chat or of jobs
(`quietsync.protocol` holds what replicas and the server say to each other),
and imports neither `quietsync.replica` nor `quietsync.server`, nor asyncio,
sqlite or aiohttp.
"""

from quietsync.conflicts.canonical import canonical_equal, canonical_json, encode_normalized
from quietsync.conflicts.conflict import Conflict, FieldRef, Side
from quietsync.conflicts.crdt import (
    CrdtText,
    TextMerge,
    TextOp,
    check_text_update,
    initial_client_id,
    initial_text_update,
    join_updates,
    merge_text_state,
    merge_text_updates,
    text_of,
)
from quietsync.conflicts.errors import (
    ClockDriftError,
    CrdtUpdateError,
    KindMismatchError,
    QuietsyncError,
)
from quietsync.conflicts.hlc import HLC, STAMP_PATTERN, Clock, validate_node_id, wall_clock_ms
from quietsync.conflicts.lww import FieldWrite, Merge, Outcome, merge_field, overwrites
from quietsync.conflicts.resolvers import Resolver, Resolvers, derived_stamp
from quietsync.conflicts.tombstone import uncovered_edits

__all__ = [
    "HLC",
    "STAMP_PATTERN",
    "Clock",
    "ClockDriftError",
    "Conflict",
    "CrdtText",
    "CrdtUpdateError",
    "FieldRef",
    "FieldWrite",
    "KindMismatchError",
    "Merge",
    "Outcome",
    "QuietsyncError",
    "Resolver",
    "Resolvers",
    "Side",
    "TextMerge",
    "TextOp",
    "canonical_equal",
    "canonical_json",
    "check_text_update",
    "derived_stamp",
    "encode_normalized",
    "initial_client_id",
    "initial_text_update",
    "join_updates",
    "merge_field",
    "merge_text_state",
    "merge_text_updates",
    "overwrites",
    "text_of",
    "uncovered_edits",
    "validate_node_id",
    "wall_clock_ms",
]
