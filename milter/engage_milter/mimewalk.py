"""Walk a raw MIME body and name the text parts tracking may change, as byte spans.

Eligible: text/html and text/plain leaves that are the message's body: every branch
of multipart/alternative, the root of multipart/related, the first part of
multipart/mixed (and of other multiparts), and every later inline text/html part of a
multipart/mixed (Apple Mail splits an HTML body around an inline attachment:
alternative > mixed > html, image, html). Never touched: attachments (a disposition
of attachment, or a file name), message/*, multipart/signed, multipart/encrypted,
multipart/report, and every part below them. Nothing is re-serialised: the caller
splices new bytes into the spans.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Optional

MAX_DEPTH = 16
SEALED = {"multipart/signed", "multipart/encrypted", "multipart/report", "multipart/digest",
          "application/pkcs7-mime",
          "application/x-pkcs7-mime"}
HEADER_END = re.compile(rb"\r?\n\r?\n")
NOT_BLANK = re.compile(rb"[^ \t\r\n]")
_header_parser = BytesHeaderParser(policy=compat32)


@dataclass(frozen=True)
class TextPart:
    start: int  # body span of the part within the whole message body
    end: int
    subtype: str  # "html" or "plain"
    charset: str
    cte: str


def headers_to_message(headers: Iterable[tuple[str, str]]) -> Message:
    message = Message()
    for name, value in headers:
        message[name] = value
    return message


def text_parts(headers: Message, body: bytes) -> tuple[list[TextPart], list[str]]:
    """The eligible parts, and a note for each part left alone (for the log)."""
    parts: list[TextPart] = []
    notes: list[str] = []
    _walk(headers, body, 0, len(body), 0, parts, notes)
    return parts, notes


def _walk(headers: Message, body: bytes, start: int, end: int, depth: int,
          parts: list[TextPart], notes: list[str]) -> None:
    ctype = headers.get_content_type()
    if depth > MAX_DEPTH:
        notes.append(f"nesting deeper than {MAX_DEPTH}")
    elif ctype in SEALED or ctype.startswith("message/"):
        notes.append(f"{ctype} left alone")
    elif _is_attachment(headers):
        notes.append(f"attachment {ctype} left alone")
    elif ctype in ("text/html", "text/plain"):
        charset = headers.get_content_charset("us-ascii") or "us-ascii"
        cte = str(headers.get("content-transfer-encoding", "7bit")).strip().lower()
        parts.append(TextPart(start, end, ctype[5:], charset, cte))
    elif headers.get_content_maintype() == "multipart":
        _walk_multipart(headers, body, start, end, depth, parts, notes)


def _is_attachment(headers: Message) -> bool:
    disposition = str(headers.get("content-disposition", "")).split(";")[0].strip().lower()
    return disposition == "attachment" or headers.get_filename() is not None \
        or headers.get_param("name") is not None


def _walk_multipart(headers: Message, body: bytes, start: int, end: int, depth: int,
                    parts: list[TextPart], notes: list[str]) -> None:
    boundary = headers.get_boundary()
    if not boundary:
        notes.append("multipart without boundary left alone")
        return
    subtype = headers.get_content_subtype()
    children = _split(body, start, end, boundary.encode("latin-1", "replace"))
    for index, (child_start, child_end) in enumerate(children):
        if index and subtype not in ("alternative", "mixed"):
            break  # related and others: only the root is text to track
        child_headers, body_start = _part_headers(body, child_start, child_end)
        if index and subtype == "mixed" and (child_headers.get_content_type() != "text/html"
                                             or not NOT_BLANK.search(body, body_start, child_end)):
            continue  # after the first part of mixed: inline HTML only (not attachments), not empty
        _walk(child_headers, body, body_start, child_end, depth + 1, parts, notes)


def _split(body: bytes, start: int, end: int, boundary: bytes) -> Iterator[tuple[int, int]]:
    """Spans of the parts between delimiter lines (RFC 2046 5.1.1: the CRLF before a
    delimiter belongs to it; text before the first one and after the last is left)."""
    marker = b"--" + boundary
    part_start: Optional[int] = None
    pos = start
    while True:
        at = body.find(marker, pos, end)
        if at < 0:
            break
        pos = at + len(marker)
        if at > 0 and body[at - 1:at] != b"\n":
            continue  # "--boundary" in the middle of a line is content
        line_end = body.find(b"\n", pos, end)
        line_end = end if line_end < 0 else line_end + 1
        rest = body[pos:line_end].rstrip(b"\r\n")
        closing = rest.startswith(b"--")
        if rest[2 if closing else 0:].strip(b" \t"):
            continue  # a longer boundary that merely starts with ours
        if part_start is not None:
            cut = at - 1 if at > 0 else at
            if cut > 0 and body[cut - 1:cut] == b"\r":
                cut -= 1
            yield part_start, max(part_start, cut)
        if closing:
            return
        part_start = pos = line_end
    if part_start is not None and part_start < end:
        yield part_start, end


def _part_headers(body: bytes, start: int, end: int) -> tuple[Message, int]:
    """A part's headers and where its body starts; no headers means text/plain."""
    if body[start:start + 2] == b"\r\n":
        return Message(), start + 2
    if body[start:start + 1] == b"\n":
        return Message(), start + 1
    match = HEADER_END.search(body, start, end)
    header_end = match.end() if match else end
    return _header_parser.parsebytes(body[start:header_end]), header_end
