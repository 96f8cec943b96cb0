"""`check_v1_update`: Yjs v1 update bytes are walked to the last byte.

pycrdt accepts a Yjs v2 update, or a v1 update with junk appended, as if it
were an (empty) v1 update; the validator must refuse both while accepting
everything pycrdt and Yjs (JavaScript) really produce in the v1 encoding.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import (
    Array,
    Doc,
    Map,
    Text,
    TransactionEvent,
    XmlElement,
    XmlFragment,
    XmlText,
    merge_updates,
)

from quietsync.conflicts.errors import CrdtUpdateError
from quietsync.conflicts.yjs_v1 import MAX_ANY_DEPTH, check_v1_update

# ---------------------------------------------------------------------------
# Real Yjs (JavaScript) updates, v1 and v2 encodings of the same documents.
#
# Made once with node 20, yjs 13.6.33 and lib0 0.2.120 (so the unit tests do
# not need node): each document below was built with fixed client ids and
# encoded with `Y.encodeStateAsUpdate(doc)` (v1) and `Y.encodeStateAsUpdateV2(doc)`
# (v2), hex-encoded with `Buffer.from(u).toString("hex")`.
#
# text   clients 1234567890123456 (a) and 9007199254740991 = 2**53 - 1 (b):
#        a.getText("t").insert(0, "héllo wörld 😀 \U0001d504 n\u0308 ñ — 日本語"); sync a -> b;
#        b: t.delete(2, 4); t.insert(3, "Ünïcødé 🎉"); sync b -> a; a: t.delete(0, 1)
# map    client 42, one transaction on getMap("m"): int 7, -123456789, 1.5, Math.PI,
#        2n ** 60n, "Grüße 👋", true, false, null, undefined, nested object and
#        array, Uint8Array([0, 1, 2, 255]), [Uint8Array([9, 8])], a Y.Array
#        [1, "x", Uint8Array([5])], a Y.Text "nested ✓", a subdoc
#        new Y.Doc({guid: "sub-guid-ä", meta: {k: 1}}), a Y.Array "gone"; then
#        m.delete("gone") (its items become GC structs) and m.set("int", 8)
# xml    client 7: getXmlFragment("x") <- Y.XmlElement("p") with attribute
#        class="intro" holding a Y.XmlText: insert(0, "Bonjour ", {bold: true}),
#        insert(8, "à tous")
# rich   client 99: getText("rich").insert(0, "Hello world"); format(0, 5,
#        {bold: true, color: "#ff0000"}); insertEmbed(5, {image:
#        "https://example.com/ä.png"}); insert(6, " dear", {italic: true});
#        format(2, 3, {bold: null})
# incremental / event / skip   client 5, with doc.on("update") recording events:
#        t.insert(0, "abc"); sv = encodeStateVector(doc); t.insert(3, "déf");
#        t.delete(0, 1); incremental = encodeStateAsUpdate(doc, sv);
#        t.insert(0, "Z"); event = the 3rd "update" event (the delete);
#        skip = Y.mergeUpdates([event 1, event 4]) (a gap: holds a Skip struct).
#        Their v2 is Y.convertUpdateFormatV1ToV2(v1).
# hook   client 7: getXmlFragment("x") <- new Y.XmlHook("my-hook"), hook.set("k", "v")
# empty  client 3, nothing done
# ---------------------------------------------------------------------------
_JS_HEX: dict[tuple[str, str], str] = {
    ("text", "v1"): (
        "0201ffffffffffffff0f00c4c0f5aae4d3da980206c0f5aae4d3da98020710c39c6ec3af63c3b864c3a920f0"
        "9f8e8905c0f5aae4d3da980200010101740184c0f5aae4d3da98020002c3a981c0f5aae4d3da9802010484c0"
        "f5aae4d3da980205017784c0f5aae4d3da98020624c3b6726c6420f09f988020f09d9484206ecc8820c3b120"
        "e2809420e697a5e69cace8aa9e01c0f5aae4d3da98020200010204"
    ),
    ("text", "v2"): (
        "000011bfffffffffffff1fc0ebd5c8a7b5b10405050c4c020802010e09c400010084008100843d38c39c6ec3"
        "af63c3b864c3a920f09f8e8974c3a977c3b6726c6420f09f988020f09d9484206ecc8820c3b120e2809420e6"
        "97a5e69cace8aa9e0a410115010100020104020100050001c0f5aae4d3da98020200000103"
    ),
    ("map", "v1"): (
        "01172a002101016d03696e74012801016d036e6567017dd5b4de752801016d05666c6f6174017c3fc0000028"
        "01016d027069017b400921fb54442d182801016d03626967017a10000000000000002801016d037374720177"
        "0c4772c3bcc39f6520f09f918b2801016d017401782801016d016601792801016d036e756c017e2801016d05"
        "756e646566017f2801016d036f626a017602016175037d01770374776f76010574687265657c405000000162"
        "760101637e2801016d036172720175037d017d0275027d0375017d042301016d0362696e04000102ff280101"
        "6d06616e7962696e017501740209082701016d04796172720008002a0e027d01770178832a1001052701016d"
        "0579746578740204002a120a6e657374656420e29c932901016d037375620b7375622d677569642dc3a47601"
        "046d6574617601016b7d012101016d04676f6e65010002a82a00017d08012a0200011c03"
    ),
    ("map", "v2"): (
        "0000026a03041c05006400192100280a2300280027000800830027000400290021000000a88701636d696e74"
        "6d6e65676d666c6f61746d70696d6269676d7374726d746d666d6e756c6d756e6465666d6f626a6d6172726d"
        "62696e6d616e7962696e6d796172726d79746578746e657374656420e29c936d7375627375622d677569642d"
        "c3a46d676f6e6501030103010501020103010341030301050103010301030106010401050801030a01040901"
        "0e0000010000000102000206410b020102010117007dd5b4de757c3fc000007b400921fb54442d187a100000"
        "0000000000770c4772c3bcc39f6520f09f918b78797e7f7602016175037d01770374776f7601057468726565"
        "7c405000000162760101637e75037d017d0275027d0375017d0404000102ff7501740209087d017701780105"
        "7601046d6574617601016b7d017d08012a0200001b02"
    ),
    ("xml", "v1"): (
        "01070700070101780301702800070005636c617373017705696e74726f07000700060600070204626f6c6404"
        "7472756584070308426f6e6a6f75722086070b04626f6c64046e756c6cc4070b070c07c3a020746f757300"
    ),
    ("xml", "v2"): (
        "00030003000247060601000402100001180d070028000700060084008600c4261e7870636c617373626f6c64"
        "426f6e6a6f757220626f6c64c3a020746f7573410005040804060301000002030601010107007705696e7472"
        "6f787e00"
    ),
    ("rich", "v1"): (
        "010c630004010472696368024865846301036c6c6f8463040620776f726c6446630004626f6c640474727565"
        "c6630b630005636f6c6f7209222366663030303022c16304630501c6630d630505636f6c6f72046e756c6cc5"
        "630e6305267b22696d616765223a2268747470733a2f2f6578616d706c652e636f6d2fc3a42e706e67227dc6"
        "630f6305066974616c69630474727565c463106305052064656172c663156305066974616c6963046e756c6c"
        "c66301630204626f6c64046e756c6c0163010d01"
    ),
    ("rich", "v2"): (
        "000300030303e301120902060e4e1203010a680601000a01034613040084014600c600c100c600c500c600c4"
        "00c63e327269636848656c6c6f20776f726c64626f6c64636f6c6f72636f6c6f726974616c69632064656172"
        "6974616c6963626f6c6404020306044500060506040101000101010c00787707236666303030307e76010569"
        "6d616765771a68747470733a2f2f6578616d706c652e636f6d2fc3a42e706e67787e7e0163010d00"
    ),
    ("incremental", "v1"): "010105038405020464c3a9660105010001",
    ("incremental", "v2"): "00000245000104000184060464c3a966030000000101030105010000",
    ("event", "v1"): "000105010001",
    ("event", "v2"): "0000000000000100000000000105010000",
    ("skip", "v1"): "0103050004010174036162630a03c405000501015a00",
    ("skip", "v2"): "0000024501010001020504000a00c40905746162635a010301010100000103000300",
    ("hook", "v1"): "010207000701017805076d792d686f6f6b28000700016b0177017600",
    (
        "hook",
        "v2",
    ): "000100024700010000030700280d09786d792d686f6f6b6b010701030100000105010101020077017600",
    ("empty", "v1"): "0000",
    ("empty", "v2"): "00000000000001000000000000",
}
JS_V1 = {name: bytes.fromhex(text) for (name, version), text in _JS_HEX.items() if version == "v1"}
JS_V2 = {name: bytes.fromhex(text) for (name, version), text in _JS_HEX.items() if version == "v2"}

# pycrdt reads an XmlHook's type ref without the name Yjs writes after it, so
# it cannot load the "hook" fixture (yet the bytes are valid Yjs v1).
PYCRDT_READABLE = sorted(set(JS_V1) - {"hook"})


def _refusal(update: bytes) -> str:
    with pytest.raises(CrdtUpdateError) as info:
        check_v1_update(update)
    return str(info.value)


# ---------------------------------------------------------------------------
# Hand-built v1 bytes (lib0 encodings), for paths no encoder takes and for
# malformed input.
# ---------------------------------------------------------------------------


def _uint(value: int) -> bytes:
    """lib0 varuint."""
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(value: int) -> bytes:
    """lib0 varint: continue bit, sign bit and 6 bits, then 7 bits a byte."""
    magnitude = abs(value)
    first = (magnitude & 0x3F) | (0x40 if value < 0 else 0)
    magnitude >>= 6
    if magnitude:
        return bytes([first | 0x80]) + _uint(magnitude)
    return bytes([first])


def _string(text: str) -> bytes:
    raw = text.encode()
    return _uint(len(raw)) + raw


def _update(structs: bytes, count: int = 1, *, client: int = 1, clock: int = 0) -> bytes:
    """One client's `count` structs, then an empty delete set."""
    return b"\x01" + _uint(count) + _uint(client) + _uint(clock) + structs + b"\x00"


def _root_array_item(content_ref: int, content: bytes) -> bytes:
    """An Item without origins in the root array "a"."""
    return bytes([content_ref]) + b"\x01" + _string("a") + content


def _any_item(*values: bytes) -> bytes:
    return _root_array_item(8, _uint(len(values)) + b"".join(values))


def _any_array(*values: bytes) -> bytes:
    return b"\x75" + _uint(len(values)) + b"".join(values)


EVERY_ANY = (
    b"\x7f",  # undefined
    b"\x7e",  # null
    b"\x7d" + _int(-5),
    b"\x7d" + _int(300),
    b"\x7d" + _int(2**53 - 1),
    b"\x7c" + struct.pack(">f", 1.5),
    b"\x7b" + struct.pack(">d", 0.1),
    b"\x7a" + struct.pack(">q", -(2**60)),
    b"\x79",  # false
    b"\x78",  # true
    b"\x77" + _string("ü\U0001d504"),
    b"\x76" + _uint(2) + _string("k") + b"\x7e" + _string("ñ") + _any_array(b"\x78"),
    _any_array(_any_array(), b"\x7d" + _int(1)),
    b"\x74" + _uint(3) + b"\x00\x01\xff",
)
EVERY_ANY_AS_PY = [
    None,
    None,
    -5,
    300,
    2**53 - 1,
    1.5,
    0.1,
    -(2**60),
    False,
    True,
    "ü\U0001d504",
    {"k": None, "ñ": [True]},
    [[], 1],
    b"\x00\x01\xff",
]


def _nested_any(depth: int) -> bytes:
    """`depth` arrays, each holding the next; the innermost is empty."""
    return b"\x75\x01" * (depth - 1) + b"\x75\x00"


# ---------------------------------------------------------------------------
# pycrdt helpers. pycrdt indexes Text by UTF-8 byte offset, so edits are
# made on a shadow `str` and their code-point positions converted.
# ---------------------------------------------------------------------------


class _Editor:
    """A pycrdt text document that records the update of every transaction."""

    def __init__(self, client_id: int | None = None, text: str = "") -> None:
        self.doc = Doc() if client_id is None else Doc(client_id=client_id)
        self.text = Text()
        self.doc["t"] = self.text
        self.shadow = ""
        self.events: list[bytes] = []
        self._subscription = self.doc.observe(self._record)
        if text:
            self.insert(0, text)

    def _record(self, event: TransactionEvent) -> None:
        self.events.append(event.update)

    def _offset(self, index: int) -> int:
        return len(self.shadow[:index].encode())

    def insert(self, index: int, value: str) -> None:
        self.text.insert(self._offset(index), value)
        self.shadow = self.shadow[:index] + value + self.shadow[index:]
        assert str(self.text) == self.shadow

    def delete(self, start: int, stop: int) -> None:
        del self.text[self._offset(start) : self._offset(stop)]
        self.shadow = self.shadow[:start] + self.shadow[stop:]
        assert str(self.text) == self.shadow


def _text_of(*updates: bytes) -> str:
    doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


UNICODE_SAMPLES = [
    "café",
    "naïve 😀",
    "\U0001d504\U0001d505\u212d",
    "n\u0308o\u0301",
    "日本語",
    "\u200d👩‍👩‍👧",
    "\U0010fffd",
]


def _pycrdt_updates() -> dict[str, bytes]:
    """A variety of updates made by pycrdt, by name."""
    updates: dict[str, bytes] = {}
    editor = _Editor(client_id=2**53 - 1)  # the largest client id pycrdt allows
    for sample in UNICODE_SAMPLES:
        editor.insert(len(editor.shadow) // 2, sample)
    updates["text state"] = editor.doc.get_update()
    before = editor.doc.get_state()
    editor.delete(2, 9)
    updates["delete only"] = editor.events[-1]
    editor.insert(3, "🎉 mid-edit")
    updates["incremental"] = editor.doc.get_update(before)
    updates["text state after edits"] = editor.doc.get_update()

    doc = Doc()
    root = Map()
    doc["m"] = root
    root["int"] = 7
    root["float"] = 2.5
    root["bools"] = [True, False]
    root["none"] = None
    root["nested"] = {"a": [1, {"b": "ü"}], "c": None}
    root["bytes"] = b"\x00\xff"
    root["array"] = Array([1, "x", Text("inner \U0001d504"), Map({"k": [None, 3.5]})])
    root["subdoc"] = Doc()
    root["gone"] = Array(["to", "delete"])
    del root["gone"]
    xml = XmlFragment()
    doc["x"] = xml
    xml.children.append(XmlElement("div", {"class": "c"}, [XmlText("hï"), XmlElement("br")]))
    rich = Text("hello world")
    doc["r"] = rich
    rich.format(0, 5, {"bold": True})
    rich.insert(5, " dear", {"italic": True})
    rich.insert_embed(0, {"image": "ä.png"})
    updates["map, array, xml and rich text"] = doc.get_update()
    return updates


PYCRDT_UPDATES = _pycrdt_updates()
VALID = {f"pycrdt {name}": update for name, update in PYCRDT_UPDATES.items()} | {
    f"yjs {name}": update for name, update in JS_V1.items()
}


# ---------------------------------------------------------------------------
# Accepted.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_accepts_valid_update(name: str) -> None:
    assert check_v1_update(VALID[name]) is None


def test_accepts_every_pycrdt_transaction_of_unicode_inserts_and_deletes() -> None:
    editor = _Editor()
    for sample in UNICODE_SAMPLES:
        editor.insert(len(editor.shadow), sample)
        editor.insert(1, sample)
        editor.delete(1, 3)
    assert len(editor.events) == 3 * len(UNICODE_SAMPLES)
    for update in editor.events:
        assert check_v1_update(update) is None
    # The transactions replayed elsewhere rebuild the text: they are the real thing.
    assert _text_of(*editor.events) == editor.shadow


def test_accepts_pycrdt_updates_and_they_rebuild_the_document() -> None:
    state = PYCRDT_UPDATES["text state"]
    assert check_v1_update(state) is None
    delete_only = PYCRDT_UPDATES["delete only"]
    assert check_v1_update(delete_only) is None
    incremental = PYCRDT_UPDATES["incremental"]
    assert check_v1_update(incremental) is None
    assert _text_of(state, delete_only, incremental) == _text_of(
        PYCRDT_UPDATES["text state after edits"]
    )
    assert "🎉 mid-edit" in _text_of(state, delete_only, incremental)


def test_accepts_merged_pycrdt_updates() -> None:
    editor = _Editor(text="ab")
    for sample in UNICODE_SAMPLES:
        editor.insert(1, sample)
        editor.delete(0, 1)
    merged = merge_updates(*editor.events)
    assert check_v1_update(merged) is None
    assert _text_of(merged) == editor.shadow
    other = merge_updates(PYCRDT_UPDATES["text state"], PYCRDT_UPDATES["delete only"], merged)
    assert check_v1_update(other) is None


def test_accepts_merged_pycrdt_updates_with_gaps_as_skip_structs() -> None:
    editor = _Editor()
    for sample in UNICODE_SAMPLES:
        editor.insert(len(editor.shadow), sample)
        editor.insert(len(editor.shadow), "-----")
    # Only the samples' transactions: the dashes' clocks are missing in between.
    gappy = merge_updates(*editor.events[::2])
    assert gappy.count(b"\x0a\x05") >= len(UNICODE_SAMPLES) - 1  # Skip structs, length 5
    assert check_v1_update(gappy) is None


@pytest.mark.parametrize("name", PYCRDT_READABLE)
def test_yjs_v1_fixtures_are_accepted_and_pycrdt_reads_them(name: str) -> None:
    update = JS_V1[name]
    assert check_v1_update(update) is None
    Doc().apply_update(update)  # a real v1 update: pycrdt decodes it
    # ... and pycrdt's own re-encoding of it is accepted too.
    assert check_v1_update(merge_updates(update)) is None


def test_yjs_fixture_contents_as_pycrdt_sees_them() -> None:
    doc = Doc()
    doc.apply_update(JS_V1["text"])
    assert str(doc.get("t", type=Text)) == "éwÜnïcødé 🎉örld 😀 \U0001d504 n\u0308 ñ — 日本語"
    doc = Doc()
    doc.apply_update(JS_V1["map"])
    values = doc.get("m", type=Map).to_py()
    assert values["str"] == "Grüße 👋"
    assert values["big"] == 2**60
    assert values["bin"] == b"\x00\x01\x02\xff"
    assert values["obj"] == {"a": [1, "two", {"three": 3.25}], "b": {"c": None}}
    assert values["ytext"] == "nested ✓"
    assert "gone" not in values
    doc = Doc()
    doc.apply_update(JS_V1["xml"])
    assert str(doc.get("x", type=XmlFragment)) == '<p class="intro"><bold>Bonjour à tous</bold></p>'
    doc = Doc()
    doc.apply_update(JS_V1["rich"])
    assert doc.get("rich", type=Text).diff()[2] == ({"image": "https://example.com/ä.png"}, None)


def test_accepts_yjs_xml_hook_with_its_name() -> None:
    # Yjs writes an XmlHook's name after its type ref (yjs `readYXmlHook`);
    # pycrdt 0.14 (yrs) reads no name there and fails on these bytes.
    hook = JS_V1["hook"]
    assert check_v1_update(hook) is None
    name = _string("my-hook")
    assert name in hook
    # Without the name (the layout yrs expects) the bytes are not Yjs v1.
    assert _refusal(hook.replace(name, b""))


def test_accepts_every_any_value_and_pycrdt_agrees_on_the_bytes() -> None:
    # Yjs 13.6.33 reads the same values from these bytes (checked once with node).
    update = _update(_any_item(*EVERY_ANY))
    assert check_v1_update(update) is None
    doc = Doc()
    doc.apply_update(update)
    assert doc.get("a", type=Array).to_py() == EVERY_ANY_AS_PY


def _json_item(count: int, *texts: str) -> bytes:
    return _update(_root_array_item(2, _uint(count) + b"".join(_string(t) for t in texts)))


def test_accepts_json_content_which_only_old_encoders_write() -> None:
    # Yjs 13.6.33 reads these bytes as [1, "ü", []] (checked once with node).
    # pycrdt 0.14 cannot: yrs's ContentJSON decoder reads one string more than
    # the count says.
    texts = ("1", '"ü"', "[]")
    assert check_v1_update(_json_item(3, *texts)) is None
    # A count one off either way (yrs's reading, or one more) leaves bytes over or missing.
    assert _refusal(_json_item(2, *texts))
    assert "unexpected end of data" in _refusal(_json_item(4, *texts))


def test_accepts_clocks_and_client_ids_up_to_2_pow_53_minus_1() -> None:
    top = 2**53 - 1
    assert check_v1_update(_update(b"", 0, client=top, clock=top)) is None
    origin = b"\x84" + _uint(top) + _uint(top) + _string("x")  # origin ID + String
    assert check_v1_update(_update(origin)) is None
    deletes = b"\x00\x01" + _uint(top) + b"\x01" + _uint(top) + _uint(top)
    assert check_v1_update(deletes) is None


def test_accepts_any_nested_max_depth_but_not_deeper() -> None:
    assert check_v1_update(_update(_any_item(_nested_any(MAX_ANY_DEPTH)))) is None
    message = _refusal(_update(_any_item(_nested_any(MAX_ANY_DEPTH + 1))))
    assert f"nested deeper than {MAX_ANY_DEPTH}" in message


def test_accepts_bytearray_and_memoryview_and_refuses_other_types() -> None:
    update = JS_V1["text"]
    assert check_v1_update(bytearray(update)) is None
    assert check_v1_update(memoryview(update)) is None
    with pytest.raises(TypeError):
        check_v1_update(update.hex())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Refused: v2, truncation, trailing bytes, garbage.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(JS_V2))
def test_refuses_the_v2_encoding_of_every_yjs_fixture(name: str) -> None:
    message = _refusal(JS_V2[name])
    assert message.startswith(f"not a Yjs v1 update ({len(JS_V2[name])} bytes): ")
    assert "v1" in message and "v2" in message and "encodeStateAsUpdateV2" in message


def test_pycrdt_alone_takes_v2_and_trailing_junk_silently() -> None:
    # Why the validator exists: neither of these raises in pycrdt.
    doc = Doc()
    doc.apply_update(JS_V2["text"])
    assert doc.get_update() == b"\x00\x00"  # "succeeded", changed nothing
    doc = Doc()
    doc.apply_update(JS_V1["text"] + b"junk")
    assert str(doc.get("t", type=Text)).startswith("éwÜ")
    assert "trailing" in _refusal(JS_V1["text"] + b"junk")


@pytest.mark.parametrize("name", sorted(VALID))
def test_refuses_every_truncation(name: str) -> None:
    update = VALID[name]
    for cut in range(len(update)):
        prefix = update[:cut]
        # A v1 update is self-delimiting, so no proper prefix should be a whole
        # update; check that with pycrdt, which refuses truncated data.
        with pytest.raises(ValueError):
            Doc().apply_update(prefix)
        message = _refusal(prefix)
        assert "at byte" in message, message


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize("tail", [b"\x00", b"\x00\x00", b"junk", bytes(range(256))])
def test_refuses_trailing_bytes(name: str, tail: bytes) -> None:
    update = VALID[name]
    message = _refusal(update + tail)
    assert f"{len(tail)} trailing bytes after the delete set at byte {len(update)}" in message


def test_refuses_random_garbage() -> None:
    rng = random.Random(20240601)
    for size in (1, 2, 3, 7, 64, 1000, 100_000):
        garbage = rng.randbytes(size)
        message = _refusal(garbage)
        assert f"({size} bytes)" in message


def _bad(structs: bytes, count: int = 1) -> bytes:
    return _update(structs, count)


MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty input", b"", "unexpected end of data at byte 0"),
    ("no delete set", b"\x00", "unexpected end of data at byte 1"),
    ("client count too large", _uint(2**40) + bytes(100), "cannot fit in the remaining 100 bytes"),
    ("struct count too large", b"\x01" + _uint(1000) + bytes(20), "struct count 1000 cannot fit"),
    ("varuint over 10 bytes", b"\x80" * 11 + b"\x00", "longer than 10 bytes at byte 0"),
    ("clock of 2**53", b"\x01\x00\x01" + _uint(2**53) + b"\x00", "clock 9007199254740992 exceeds"),
    ("origin client of 2**53", _bad(b"\x84" + _uint(2**53) + b"\x00" + _string("x")), "exceeds"),
    ("unknown content kind", _bad(b"\x0b\x01"), "unknown struct content kind 11"),
    ("unknown content kind 31", _bad(b"\x1f\x01"), "unknown struct content kind 31"),
    ("parent info 2", _bad(b"\x04\x02" + _string("x")), "parent info 2 is neither 0 nor 1"),
    ("unknown type ref", _bad(_root_array_item(7, b"\x07")), "unknown type ref 7"),
    ("unknown Any tag", _bad(_any_item(b"\x73")), "unknown Any type tag 115"),
    ("Any tag 128", _bad(_any_item(b"\x80")), "unknown Any type tag 128"),
    ("float64 cut short", _bad(_any_item(b"\x7b\x00\x00")), "(type tag 123) runs past the end"),
    (
        "Any integer over 10 bytes",
        _bad(_any_item(b"\x7d" + b"\x80" * 10 + b"\x00")),
        "longer than 10",
    ),
    ("Any integer too large", _bad(_any_item(b"\x7d" + _int(2**53))), "exceeds 2**53 - 1"),
    ("string past the end", _bad(_root_array_item(4, b"\x05ab")), "runs past the end"),
    ("invalid UTF-8", _bad(_root_array_item(4, b"\x02\xc3\x28")), "not valid UTF-8"),
    ("UTF-8 surrogate", _bad(_root_array_item(4, b"\x03\xed\xa0\x80")), "not valid UTF-8"),
    ("bad root name", _bad(b"\x04\x01\x01\xff" + _string("x")), "parent name is not valid UTF-8"),
    ("binary past the end", _bad(_root_array_item(3, b"\x09abc")), "runs past the end"),
    ("deep Any", _bad(_any_item(_nested_any(10_000))), "nested deeper than"),
    ("delete set clock", b"\x00\x01\x01\x01" + _uint(2**53) + b"\x01", "delete set clock"),
    ("range count too large", b"\x00\x01\x01" + _uint(500) + bytes(10), "range count 500"),
]


@pytest.mark.parametrize(
    ("update", "expected"),
    [pytest.param(update, expected, id=name) for name, update, expected in MALFORMED],
)
def test_refuses_malformed_input_saying_what_and_where(update: bytes, expected: str) -> None:
    message = _refusal(update)
    assert expected in message
    assert message.startswith(f"not a Yjs v1 update ({len(update)} bytes): ")


def test_message_is_short_and_does_not_dump_the_bytes() -> None:
    garbage = bytes(range(256)) * 40
    message = _refusal(garbage)
    assert len(message) < 300
    assert garbage[:8].hex() not in message
    assert repr(garbage[:8])[2:-1] not in message
    assert "Yjs v1 update" in message and "not v2" in message


def test_an_error_is_a_value_error_with_no_chained_internals() -> None:
    with pytest.raises(ValueError) as info:
        check_v1_update(JS_V2["map"])
    assert isinstance(info.value, CrdtUpdateError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------------------
# Properties.
# ---------------------------------------------------------------------------


def _accepted_or_refused_cleanly(data: bytes) -> bool:
    """True if accepted; False if refused with a proper `CrdtUpdateError`."""
    try:
        result = check_v1_update(data)
    except CrdtUpdateError as exc:
        message = str(exc)
        assert message.startswith(f"not a Yjs v1 update ({len(data)} bytes): ")
        assert "v2" in message
        return False
    assert result is None
    return True


@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_accepted_or_refused_with_crdt_update_error(data: bytes) -> None:
    _accepted_or_refused_cleanly(data)


@given(st.sampled_from(sorted(VALID)), st.data())
def test_mutated_valid_updates_are_accepted_or_refused_cleanly(
    name: str, data: st.DataObject
) -> None:
    update = bytearray(VALID[name])
    index = data.draw(st.integers(0, len(update) - 1))
    mutation = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    if mutation == "replace":
        update[index] = data.draw(st.integers(0, 255))
    elif mutation == "delete":
        del update[index]
    else:
        update.insert(index, data.draw(st.integers(0, 255)))
    _accepted_or_refused_cleanly(bytes(update))


_EDIT = st.tuples(
    st.booleans(),  # delete (else insert)
    st.integers(min_value=0, max_value=10_000),  # position, modulo the length
    st.one_of(st.text(min_size=1, max_size=6), st.sampled_from(UNICODE_SAMPLES)),
    st.integers(min_value=1, max_value=4),  # delete length
)


@given(st.lists(_EDIT, min_size=1, max_size=25), st.integers(min_value=0, max_value=24))
def test_every_update_pycrdt_makes_from_random_unicode_edits_is_accepted(
    edits: list[tuple[bool, int, str, int]], checkpoint: int
) -> None:
    editor = _Editor()
    state_vector = editor.doc.get_state()
    for step, (is_delete, position, value, length) in enumerate(edits):
        if step == checkpoint:
            state_vector = editor.doc.get_state()
        size = len(editor.shadow)
        if is_delete and size:
            start = position % size
            editor.delete(start, min(size, start + length))
        else:
            editor.insert(position % (size + 1), value)
    produced = [
        *editor.events,
        editor.doc.get_update(),
        editor.doc.get_update(state_vector),
        merge_updates(*editor.events),
    ]
    for update in produced:
        assert check_v1_update(update) is None
    assert _text_of(*editor.events) == editor.shadow
