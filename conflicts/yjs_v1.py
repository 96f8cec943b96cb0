"""Structural check of Yjs **v1** update bytes, before pycrdt sees them.

Why this exists: pycrdt (yrs) is lenient about what it is handed.

* A Yjs **v2** update (JS ``Y.encodeStateAsUpdateV2``, the ``"updateV2"``
  event) passed to ``pycrdt.Doc().apply_update()`` "succeeds" and changes
  nothing: read as v1, its leading bytes look like an empty update.
* A valid v1 update with **trailing garbage** appended is accepted too; the
  junk after the delete set is ignored.

Either way a client's edit would be silently lost, so quietsync refuses such
bytes with `check_v1_update`, which raises `CrdtUpdateError` naming the
problem, its byte offset and the v1/v2 mix-up that is its likeliest cause.

What is checked: the whole v1 layout (Yjs ``UpdateDecoderV1``, lib0
``decoding``) is walked and every byte must be consumed:

* the struct section: per client a struct count, client id and clock, then
  each struct: GC, Skip or an Item with its origin / right origin / parent
  info and one of the content kinds 1-9 (Deleted, JSON, Binary, String, Embed,
  Format, Type, Any, Doc), ``readAny`` values included;
* the delete set: per client a client id and its (clock, length) ranges;
* integers are unsigned LEB128 of at most 10 bytes, and clocks, lengths and
  client ids must stay within JavaScript's safe range (at most 2**53 - 1);
* strings must be valid UTF-8; type refs must be 0-6; parent info 0 or 1;
* counts that cannot fit in the bytes left are refused at once, and
  ``readAny`` nesting is bounded (`MAX_ANY_DEPTH`), so hostile input costs
  time linear in its length and no recursion.

Where yrs reads the format differently from Yjs, Yjs is followed: an
XmlHook's type ref is followed by its name, and JSON content holds exactly
as many strings as its count (yrs reads one more). pycrdt cannot load such
(rare) updates; it raises, so nothing is lost silently.

What is *not* checked: semantics. Whether IDs point at existing structs,
clocks are contiguous, or the update fits the document is still pycrdt's job;
so is the JSON text inside JSON/Embed/Format content, which is checked to be
UTF-8 but not parsed (Yjs and pycrdt raise on invalid JSON). The other way
round, this is stricter than Yjs's decoder in two places: parent info must be
0 or 1 (Yjs reads anything but 1 as 0), and integers beyond 2**53 - 1 are
refused (lib0 lets some through, imprecisely). Those were the only
disagreements in a differential fuzz against Yjs 13.6. This module does no
I/O and keeps no state.
"""

from __future__ import annotations

from quietsync.conflicts.errors import CrdtUpdateError

__all__ = ["MAX_ANY_DEPTH", "check_v1_update"]

#: How deeply lib0 ``readAny`` arrays/objects may nest before the update is refused.
MAX_ANY_DEPTH = 100

# Largest clock, length or client id: JavaScript's Number.MAX_SAFE_INTEGER
# (lib0 refuses larger ones; pycrdt refuses client ids of more than 53 bits).
_MAX_SAFE = 2**53 - 1
# A varuint of more than 10 bytes (70 bits) is malformed whatever its value.
_MAX_VARUINT_BYTES = 10

# Struct content refs (`info & 0x1f`), Yjs `contentRefs`.
_GC = 0
_DELETED = 1
_JSON = 2
_BINARY = 3
_STRING = 4
_EMBED = 5
_FORMAT = 6
_TYPE = 7
_ANY = 8
_DOC = 9
_SKIP = 10
# Type refs of ContentType (Yjs `typeRefs`): 0 Array .. 6 XmlText.
_MAX_TYPE_REF = 6
_NAMED_TYPE_REFS = frozenset({3, 5})  # XmlElement and XmlHook carry a name

# `bytes.translate` table: 0 for the last byte of a varuint (< 0x80), 1 for the others.
_STOPS = bytes(0 if byte < 0x80 else 1 for byte in range(256))
# Seven continuation bytes in a row (in translated bytes): a varuint of 8 bytes or more.
_LONG_RUN = b"\x01" * 7

_HINT = (
    'expected Yjs v1 update encoding (Y.encodeStateAsUpdate, the doc\'s "update" event), '
    'not v2 (encodeStateAsUpdateV2, "updateV2")'
)


class _Malformed(Exception):
    """Internal: what went wrong and at which byte offset."""

    def __init__(self, what: str, at: int) -> None:
        super().__init__(what, at)
        self.what = what
        self.at = at


def check_v1_update(update: bytes) -> None:
    """Raise `CrdtUpdateError` unless *update* is one complete Yjs v1 update.

    The whole structure is walked and every byte must be consumed; see the
    module docstring for what is (and is not) checked. Returns ``None`` on
    success. *update* may also be a ``bytearray`` or ``memoryview``; anything
    else is a `TypeError`.
    """
    if type(update) is bytes:
        data = update
    elif isinstance(update, bytes | bytearray | memoryview):
        data = bytes(update)
    else:
        raise TypeError(f"a Yjs update is bytes, not {type(update).__name__}")
    size = len(data)
    try:
        _walk(data, size)
    except _Malformed as exc:
        raise CrdtUpdateError(_message(size, exc.what, exc.at)) from None
    except IndexError:
        # Every single-byte read indexes `data` directly; running off its end
        # means the update stops in the middle of a value.
        raise CrdtUpdateError(_message(size, "unexpected end of data", size)) from None


def read_state_vector(vector: bytes) -> dict[int, int]:
    """A v1 state vector (`pycrdt.Doc.get_state`) as ``{client: next clock}``."""
    count, pos = _read_uint(vector, 0, "state vector count")
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = _read_uint(vector, pos, "state vector client")
        clocks[client], pos = _read_uint(vector, pos, "state vector clock")
    return clocks


def deletes_past(update: bytes, clocks: dict[int, int]) -> bool:
    """True if *update*, a v1 update holding no structs, deletes an item past `clocks`.

    ``get_update(u, doc.get_state())`` of an update the document integrated is
    such an update: no struct, and every deletion of ``u``. A deletion past the
    document's clocks targets an item it has not received yet; the document
    holds it aside (in memory only), so a caller that must not lose it keeps
    the update until the item arrives (`CrdtText`).
    """
    structs, pos = _read_uint(update, 0, "struct client count")
    if structs:
        raise ValueError("deletes_past reads updates without structs")
    num_clients, pos = _read_uint(update, pos, "delete set client count")
    for _ in range(num_clients):
        client, pos = _read_uint(update, pos, "delete set client id")
        num_ranges, pos = _read_uint(update, pos, "delete set range count")
        known = clocks.get(client, 0)
        for _ in range(num_ranges):
            clock, pos = _read_uint(update, pos, "delete set clock")
            length, pos = _read_uint(update, pos, "delete set length")
            if clock + length > known:
                return True
    return False


def _message(size: int, what: str, at: int) -> str:
    return f"not a Yjs v1 update ({size} bytes): {what} at byte {at}; {_HINT}"


def _read_uint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Read a lib0 varuint at *pos*: (value, position after it), value <= 2**53 - 1."""
    start = pos
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 7 * _MAX_VARUINT_BYTES:
            raise _Malformed(f"{what}: variable-length integer longer than 10 bytes", start)
    if value > _MAX_SAFE:
        raise _Malformed(f"{what} {value} exceeds 2**53 - 1", start)
    return value, pos


def _skip_uint(data: bytes, pos: int, what: str) -> int:
    """Like `_read_uint`, but only the position after the varuint is returned."""
    if data[pos] < 0x80:
        return pos + 1
    return _read_uint(data, pos, what)[1]


def _read_count(data: bytes, pos: int, size: int, what: str, min_bytes: int) -> tuple[int, int]:
    """Read a count of items each at least *min_bytes* long; refuse one that cannot fit."""
    count, after = _read_uint(data, pos, what)
    if count * min_bytes > size - after:
        raise _Malformed(f"{what} {count} cannot fit in the remaining {size - after} bytes", pos)
    return count, after


def _skip_string(data: bytes, pos: int, size: int, what: str) -> int:
    """Skip a lib0 varString (varuint byte length + UTF-8), checking the UTF-8."""
    byte = data[pos]
    if byte < 0x80:
        length = byte
        start = pos + 1
    else:
        length, start = _read_uint(data, pos, f"{what} length")
    end = start + length
    if end > size:
        raise _Malformed(f"{what} of {length} bytes runs past the end", pos)
    try:
        data[start:end].decode()
    except UnicodeDecodeError as exc:
        raise _Malformed(f"{what} is not valid UTF-8", start + exc.start) from None
    return end


def _skip_bytes(data: bytes, pos: int, size: int, what: str) -> int:
    """Skip a lib0 varUint8Array (varuint length + that many bytes)."""
    length, start = _read_uint(data, pos, f"{what} length")
    end = start + length
    if end > size:
        raise _Malformed(f"{what} of {length} bytes runs past the end", pos)
    return end


def _skip_any(data: bytes, pos: int, size: int) -> int:
    """Skip one lib0 ``readAny`` value, iteratively, nesting at most `MAX_ANY_DEPTH` deep."""
    # Each open array/object is [values still to read, 1 if object else 0].
    stack: list[list[int]] = []
    while True:
        if stack:
            top = stack[-1]
            if top[0] == 0:
                stack.pop()
                if stack:
                    continue
                return pos
            top[0] -= 1
            if top[1]:
                pos = _skip_string(data, pos, size, "Any object key")
        tag_at = pos
        tag = data[pos]
        pos += 1
        if tag == 125:  # varint: continue bit, sign bit, 6 data bits; then 7 bits a byte
            byte = data[pos]
            pos += 1
            if byte & 0x80:
                value = byte & 0x3F
                shift = 6
                while True:
                    byte = data[pos]
                    pos += 1
                    value |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
                    if shift > 6 + 7 * (_MAX_VARUINT_BYTES - 2):
                        raise _Malformed(
                            "Any integer: variable-length integer longer than 10 bytes",
                            tag_at + 1,
                        )
                if value > _MAX_SAFE:
                    raise _Malformed(f"Any integer {value} exceeds 2**53 - 1", tag_at + 1)
        elif tag == 119:
            pos = _skip_string(data, pos, size, "Any string")
        elif tag == 118 or tag == 117:  # object, array
            is_object = tag == 118
            count, pos = _read_count(
                data,
                pos,
                size,
                "Any object size" if is_object else "Any array size",
                2 if is_object else 1,
            )
            if len(stack) >= MAX_ANY_DEPTH:
                raise _Malformed(f"Any value nested deeper than {MAX_ANY_DEPTH}", tag_at)
            stack.append([count, 1 if is_object else 0])
            continue
        elif tag == 124:  # float32
            pos += 4
        elif tag == 123 or tag == 122:  # float64, bigint64
            pos += 8
        elif tag == 116:  # Uint8Array
            pos = _skip_bytes(data, pos, size, "Any Uint8Array")
        elif tag < 116 or tag > 127:
            raise _Malformed(f"unknown Any type tag {tag}", tag_at)
        # else 127 undefined, 126 null, 121 false, 120 true: the tag is all there is.
        if pos > size:
            raise _Malformed(f"Any value (type tag {tag}) runs past the end", tag_at)
        if not stack:
            return pos


def _skip_delete_ranges(data: bytes, stops: bytes, pos: int, size: int, num_ranges: int) -> int:
    """Skip `num_ranges` (clock, length) varuint pairs; return the position after them.

    The ranges are nothing but 2 * `num_ranges` varuints, so they end just
    after the 2 * `num_ranges`-th varuint end from `pos`, which is found by
    counting varuint ends in C: each step counts as many more bytes as there
    are varuints still missing (each is at least one byte), so every byte is
    counted once. If one of them has 8 bytes or more, or they run past what
    10-byte varuints or the data allow, they are walked one by one for a
    precise verdict.
    """
    need = 2 * num_ranges
    count = stops.count
    limit = min(size, pos + _MAX_VARUINT_BYTES * need)
    have = 0
    end = pos
    while have < need:
        after = end + need - have
        if after > limit:
            return _walk_delete_ranges(data, pos, num_ranges)
        have += count(0, end, after)
        end = after
    # The last chunk held as many varuint ends as bytes: `end` is just after one.
    if stops.find(_LONG_RUN, pos, end) != -1:
        return _walk_delete_ranges(data, pos, num_ranges)
    return end


def _walk_delete_ranges(data: bytes, pos: int, num_ranges: int) -> int:
    """`_skip_delete_ranges` the slow way, one varuint at a time."""
    for _ in range(num_ranges):
        pos = _skip_uint(data, pos, "delete set clock")
        pos = _skip_uint(data, pos, "delete set length")
    return pos


def _walk(data: bytes, size: int) -> None:
    """Walk one v1 update; raise `_Malformed` (or `IndexError` at the end of data)."""
    # Where each varuint ends is found in C: in `stops` every byte below 0x80
    # (the last byte of a varuint) is 0, so `find(0, pos)` is the last byte of
    # the varuint at `pos`. A varuint of at most 7 bytes (49 bits) is always
    # in range, one of 8 bytes is if its last byte is below 16 (2**53 - 1);
    # anything else (or no last byte: -1) is left to `_read_uint` to judge.
    stops = data.translate(_STOPS)
    find = stops.find
    read_uint = _read_uint
    skip_uint = _skip_uint
    skip_string = _skip_string
    pos = 0

    # Struct section: numClients; per client numStructs, client, clock, structs.
    # A client entry is at least 3 bytes, a struct at least 2.
    num_clients, pos = _read_count(data, pos, size, "client count", 3)
    for _ in range(num_clients):
        num_structs, pos = _read_count(data, pos, size, "struct count", 2)
        pos = skip_uint(data, pos, "client id")
        pos = skip_uint(data, pos, "clock")
        for _ in range(num_structs):
            info = data[pos]
            pos += 1
            ref = info & 0x1F
            if ref == _GC:  # GC: a length, nothing else
                pos = pos + 1 if data[pos] < 0x80 else read_uint(data, pos, "GC length")[1]
                continue
            if ref > _DOC:
                if ref != _SKIP:
                    raise _Malformed(
                        f"unknown struct content kind {ref} (info byte 0x{info:02x})", pos - 1
                    )
                pos = pos + 1 if data[pos] < 0x80 else read_uint(data, pos, "Skip length")[1]
                continue
            if info & 0x80:  # origin ID: client, clock
                end = find(0, pos)
                span = end - pos
                if (span > 6 or span < 0) and (span != 7 or data[end] > 15):
                    read_uint(data, pos, "origin client id")
                pos = end + 1
                end = find(0, pos)
                span = end - pos
                if (span > 6 or span < 0) and (span != 7 or data[end] > 15):
                    read_uint(data, pos, "origin clock")
                pos = end + 1
            if info & 0x40:  # right origin ID: client, clock
                end = find(0, pos)
                span = end - pos
                if (span > 6 or span < 0) and (span != 7 or data[end] > 15):
                    read_uint(data, pos, "right origin client id")
                pos = end + 1
                end = find(0, pos)
                span = end - pos
                if (span > 6 or span < 0) and (span != 7 or data[end] > 15):
                    read_uint(data, pos, "right origin clock")
                pos = end + 1
            if not info & 0xC0:  # no origins: the parent is spelled out
                parent_info = data[pos]
                pos += 1
                if parent_info == 1:  # a named root type
                    pos = skip_string(data, pos, size, "parent name")
                elif parent_info == 0:  # a nested type, by its ID
                    pos = skip_uint(data, pos, "parent client id")
                    pos = skip_uint(data, pos, "parent clock")
                else:
                    raise _Malformed(f"parent info {parent_info} is neither 0 nor 1", pos - 1)
                if info & 0x20:
                    pos = skip_string(data, pos, size, "parent key")
            # Content.
            if ref == _STRING:
                byte = data[pos]
                if byte < 0x80:
                    start = pos + 1
                    end = start + byte
                else:
                    length, start = read_uint(data, pos, "String content length")
                    end = start + length
                if end > size:
                    raise _Malformed(
                        f"String content of {end - start} bytes runs past the end", pos
                    )
                try:
                    data[start:end].decode()
                except UnicodeDecodeError as exc:
                    raise _Malformed(
                        "String content is not valid UTF-8", start + exc.start
                    ) from None
                pos = end
            elif ref == _DELETED:
                pos = pos + 1 if data[pos] < 0x80 else read_uint(data, pos, "Deleted length")[1]
            elif ref == _ANY:
                count, pos = _read_count(data, pos, size, "Any content count", 1)
                for _ in range(count):
                    pos = _skip_any(data, pos, size)
            elif ref == _TYPE:
                type_at = pos
                type_ref, pos = read_uint(data, pos, "type ref")
                if type_ref > _MAX_TYPE_REF:
                    raise _Malformed(f"unknown type ref {type_ref}", type_at)
                if type_ref in _NAMED_TYPE_REFS:
                    pos = skip_string(data, pos, size, "XML name")
            elif ref == _FORMAT:
                pos = skip_string(data, pos, size, "Format key")
                pos = skip_string(data, pos, size, "Format value")
            elif ref == _EMBED:
                pos = skip_string(data, pos, size, "Embed")
            elif ref == _BINARY:
                pos = _skip_bytes(data, pos, size, "Binary content")
            elif ref == _JSON:
                count, pos = _read_count(data, pos, size, "JSON content count", 1)
                for _ in range(count):
                    pos = skip_string(data, pos, size, "JSON content")
            else:  # _DOC: guid, options (an Any)
                pos = skip_string(data, pos, size, "Doc guid")
                pos = _skip_any(data, pos, size)

    # Delete set: numClients; per client client, numRanges, (clock, len) ranges.
    # A client entry is at least 2 bytes, a range 2.
    num_clients, pos = _read_count(data, pos, size, "delete set client count", 2)
    for _ in range(num_clients):
        pos = skip_uint(data, pos, "delete set client id")
        num_ranges, pos = _read_count(data, pos, size, "delete set range count", 2)
        pos = _skip_delete_ranges(data, stops, pos, size, num_ranges)

    if pos != size:
        raise _Malformed(f"{size - pos} trailing bytes after the delete set", pos)
