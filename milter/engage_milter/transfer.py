"""Content-Transfer-Encodings: decode a part body, splice edits, encode it back.

The part keeps its encoding. Quoted-printable is edited line by line: only the hard
lines an edit touches are decoded and re-encoded, every other encoded byte stays as
the sender wrote it. Base64 is re-encoded with the original line length and line ends.
7bit/8bit/binary bodies are spliced as bytes. An encoding we do not know raises
CannotRewrite and the part keeps its bytes.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

PLAIN = ("7bit", "8bit", "binary", "")
TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n)")
HARD_END = re.compile(rb"\r\n(?<!=\r\n)")  # a CRLF that is not a soft line break
CRLF = re.compile(rb"\r\n")


class CannotRewrite(Exception):
    """The part cannot be decoded and encoded back faithfully; leave it alone."""


class Splice(NamedTuple):  # a tuple: one per edit per message, built fast
    """Replace decoded bytes [start, end) with ``data``."""

    start: int
    end: int
    data: bytes


def newline_of(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw[:4096] or b"\n" not in raw else b"\n"


def splice(data: bytes, edits: Sequence[Splice]) -> bytes:
    """Apply sorted, non-overlapping edits to ``data``. The unchanged stretches are
    joined from views of ``data``, not copies, and an edit of the whole is its data."""
    if len(edits) == 1 and edits[0].start == 0 and edits[0].end == len(data):
        return edits[0].data
    view = memoryview(data)
    out: list[Any] = []
    pos = 0
    for edit in edits:
        out += (view[pos:edit.start], edit.data)
        pos = edit.end
    out.append(view[pos:])
    return b"".join(out)


class Codec:
    """A part body in its transfer encoding, with its decoded bytes."""

    def __init__(self, raw: bytes, cte: str) -> None:
        self.raw = raw
        self.cte = cte.strip().lower()
        self.newline = newline_of(raw)
        if self.cte in PLAIN:
            self.decoded = raw
        elif self.cte == "base64":
            self.decoded = self._b64decode(raw)
        elif self.cte == "quoted-printable":
            self._qp_split(raw)
        else:
            raise CannotRewrite(f"unknown Content-Transfer-Encoding {cte!r}")

    @staticmethod
    def _b64decode(raw: bytes) -> bytes:
        compact = re.sub(rb"\s+", b"", raw)
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CannotRewrite(f"invalid base64: {exc}") from None

    def encode(self, edits: Sequence[Splice]) -> bytes:
        """The part body in its own encoding with the decoded edits applied."""
        if not edits:
            return self.raw
        if self.cte in PLAIN:
            return splice(self.raw, edits)
        if self.cte == "base64":
            return self._b64encode(splice(self.decoded, edits))
        return self._qp_encode(edits)

    # base64 ---------------------------------------------------------------
    def _b64encode(self, data: bytes) -> bytes:
        first = self.raw.lstrip().split(b"\n", 1)[0].rstrip(b"\r")
        width = max(4, min(len(first) // 4 * 4, 76)) if b"\n" in self.raw.strip() else 76
        text = base64.b64encode(data)
        lines = [text[i:i + width] for i in range(0, len(text), width)]
        ending = self.newline if self.raw.endswith(b"\n") else b""
        return self.newline.join(lines) + ending

    # quoted-printable -----------------------------------------------------
    def _qp_split(self, raw: bytes) -> None:
        """Cut into hard lines (soft breaks joined) and decode each one: the whole body
        at once when a2b_qp reads it as it would read each hard line."""
        if _bulk_decodable(raw) and self._qp_split_bulk(raw):
            return
        self._qp_split_lines(raw)

    def _qp_split_bulk(self, raw: bytes) -> bool:
        decoded = binascii.a2b_qp(raw)
        ends = [match.end() for match in HARD_END.finditer(raw)]
        starts = [0] + [match.end() for match in CRLF.finditer(decoded)]
        if len(starts) != len(ends) + 1:
            return False  # a decoded CRLF that ends no hard line: from =0D=0A, or "==" ("=")
        if (ends[-1] if ends else 0) < len(raw):
            ends.append(len(raw))  # the last line has no line end
        self.hard: list[tuple[int, int]] = list(zip([0] + ends, ends))
        self.starts: list[int] = starts[:len(ends)]
        self.decoded = decoded
        return True

    def _qp_split_lines(self, raw: bytes) -> None:
        """The reference: one hard line at a time."""
        self.hard = []  # raw span of each hard line, line end included
        self.starts = []  # decoded offset where each hard line starts
        pieces: list[bytes] = []
        decoded_len = 0
        spans, start, pos = [], 0, 0
        for line in raw.split(b"\n"):
            pos += len(line) + 1
            # A line ending in "=" (maybe followed by transport padding) is a soft break.
            if not line.rstrip(b" \t\r").endswith(b"="):
                spans.append((start, min(pos, len(raw))))
                start = pos
        if start < len(raw):
            spans.append((start, len(raw)))
        spans = [(a, b) for a, b in spans if b > a]
        for start, end in spans:
            piece = _qp_decode_line(raw[start:end])
            self.hard.append((start, end))
            self.starts.append(decoded_len)
            pieces.append(piece)
            decoded_len += len(piece)
        self.decoded = b"".join(pieces)

    def _qp_encode(self, edits: Sequence[Splice]) -> bytes:
        groups = self._qp_groups(edits)
        out: list[bytes] = []
        raw_pos = 0
        for first, last, group_edits in groups:
            raw_start, raw_end = self.hard[first][0], self.hard[last][1]
            dec_start = self.starts[first]
            dec_end = self.starts[last + 1] if last + 1 < len(self.starts) else len(self.decoded)
            shifted = [Splice(e.start - dec_start, e.end - dec_start, e.data) for e in group_edits]
            text = splice(self.decoded[dec_start:dec_end], shifted)
            out += (self.raw[raw_pos:raw_start], self._qp_encode_text(text))
            raw_pos = raw_end
        out.append(self.raw[raw_pos:])
        return b"".join(out)

    def _qp_groups(self, edits: Sequence[Splice]) -> list[tuple[int, int, list[Splice]]]:
        """Runs of hard lines touched by edits: (first line, last line, edits)."""
        groups: list[tuple[int, int, list[Splice]]] = []
        for edit in edits:
            first = bisect.bisect_right(self.starts, edit.start) - 1
            last = max(first, bisect.bisect_right(self.starts, max(edit.start, edit.end - 1)) - 1)
            if groups and first <= groups[-1][1]:
                prev_first, prev_last, prev_edits = groups[-1]
                prev_edits.append(edit)  # in place: many edits on one hard line stay linear
                groups[-1] = (prev_first, max(prev_last, last), prev_edits)
            else:
                groups.append((first, last, [edit]))
        return groups

    def _qp_encode_text(self, text: bytes) -> bytes:
        encoded = binascii.b2a_qp(text.replace(b"\r\n", b"\n"), istext=True)
        return encoded.replace(b"\n", self.newline)


def _bulk_decodable(raw: bytes) -> bool:
    """Whether a2b_qp reads the whole body as it reads each hard line: CRLF line ends
    only, no transport padding (white space before a line end), no soft break or
    white space at the very end."""
    return (raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")
            and b" \r\n" not in raw and b"\t\r\n" not in raw
            and not raw.endswith((b"=\r\n", b" ", b"\t")))


def _qp_decode_line(encoded: bytes) -> bytes:
    """One hard line decoded, its line end as CRLF."""
    body = encoded.rstrip(b"\r\n")
    if b" \n" in body or b"\t\n" in body or b" \r\n" in body or b"\t\r\n" in body:
        # RFC 2045 6.7 (3): white space at the end of an encoded line is transport
        # padding; "=  CRLF" is still a soft break.
        body = TRAILING_SPACE.sub(b"", body)
    decoded = binascii.a2b_qp(body.rstrip(b" \t"))
    return decoded + b"\r\n" if len(body) < len(encoded) else decoded
