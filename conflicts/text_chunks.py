"""`TextChunks`: a ``str`` kept in chunks, so an edit costs its chunk, not the text.

`CrdtText` keeps its document's text beside the document, to read it and to
turn code-point positions into the UTF-8 byte offsets pycrdt counts. As one
flat ``str``, every keystroke copied the whole text (``s[:i] + x + s[i:]``)
and, once the text held one non-ASCII character, encoded everything before
the cursor to find its byte offset: near the end of the automerge-paper trace
(105k characters) that was most of a keystroke's cost, and it grew with the
text. Here the text is a list of chunks of about `CHUNK` code points, each
with its UTF-8 length: a position is found by walking the chunk lengths
(about a hundred for that text) and encoding within one chunk; an edit
rebuilds only the chunks it touches. The whole ``str`` is joined when read
and kept until the next edit.

Pure: no I/O, no pycrdt.
"""

from __future__ import annotations

__all__ = ["CHUNK", "TextChunks"]

CHUNK = 1024
"""Code points per chunk, about: a new chunk holds `CHUNK`, none holds over twice as many."""


def _utf8_len(chunk: str) -> int:
    return len(chunk) if chunk.isascii() else len(chunk.encode())


def _split(text: str) -> list[str]:
    """`text` as chunks of `CHUNK` code points (one chunk if it holds up to twice that)."""
    if len(text) <= 2 * CHUNK:
        return [text]
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]


class TextChunks:
    """A text as chunks with their UTF-8 lengths (see the module docstring)."""

    __slots__ = ("_chunks", "_joined", "_length", "_utf8")

    def __init__(self, text: str = "") -> None:
        self._chunks = _split(text)
        self._utf8 = [_utf8_len(c) for c in self._chunks]
        self._length = len(text)
        self._joined: str | None = text

    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        if self._joined is None:
            self._joined = "".join(self._chunks)
        return self._joined

    def _locate(self, index: int) -> tuple[int, int, int]:
        """The chunk holding code point `index` (the last one for the end), the index
        within it, and the UTF-8 bytes before it."""
        before = 0
        last = len(self._chunks) - 1
        for n, chunk in enumerate(self._chunks):
            if index <= len(chunk) and (index < len(chunk) or n == last):
                return n, index, before
            index -= len(chunk)
            before += self._utf8[n]
        raise IndexError(index)  # past the end: callers check ranges first

    def utf8_offset(self, index: int) -> int:
        """The UTF-8 byte offset of code point `index` (0..len)."""
        n, within, before = self._locate(index)
        chunk = self._chunks[n]
        return before + (within if chunk.isascii() else len(chunk[:within].encode()))

    def replace(self, index: int, count: int, insert: str) -> None:
        """Replace `count` code points at `index` with `insert` (range already checked)."""
        first, start, _ = self._locate(index)
        last, end, _ = self._locate(index + count) if count else (first, start, 0)
        middle = self._chunks[first][:start] + insert + self._chunks[last][end:]
        if len(middle) < CHUNK // 2 and last + 1 < len(self._chunks):
            last += 1  # a small piece joins its neighbour: chunks stay few
            middle += self._chunks[last]
        pieces = _split(middle) if middle else []
        self._chunks[first : last + 1] = pieces
        self._utf8[first : last + 1] = [_utf8_len(p) for p in pieces]
        if not self._chunks:  # everything deleted
            self._chunks, self._utf8 = [""], [0]
        self._length += len(insert) - count
        self._joined = None
