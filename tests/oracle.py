"""An independent checker for "Do no harm": did tracking change only what it may?

Built on the standard library's ``email`` package only; nothing here imports or
copies engage_milter code, so a bug there cannot hide itself here.

``assert_only_tracking_changed(original, rewritten, tracking_url, stored_links)``
raises ``OracleError`` (an AssertionError) unless all of this holds:

* the top-level headers are the original's, in order and byte for byte, minus every
  X-MSYS-API header (and no X-MSYS-API is left);
* the MIME tree is the same: every part has the same headers (so the same content
  type, charset and Content-Transfer-Encoding), multiparts the same number of
  children, the same preamble and epilogue;
* outside the payloads of the eligible text parts that changed, the message is
  byte-identical (the "skeleton" check);
* parts that tracking must never touch -- anything that is not a text/html or
  text/plain leaf, attachments (disposition attachment or a file name), and every
  part under message/*, multipart/signed, multipart/encrypted or
  application/pkcs7-mime -- keep their raw bytes and their decoded bytes;
* no line of the rewritten message is longer than 998 octets, unless that very line
  is already in the original;
* each eligible part that changed decodes (in its own charset) to the original text
  once the open pixels ``<img src="{tracking_url}/i/..."/"/o/...">`` are taken out,
  each click URL ``{tracking_url}/c/<token>`` is put back as the stored destination
  (``stored_links[index]``, the index being the token's base-36 tail), and the
  Momentum escapes {{opening_double_curly()}} / {{closing_double_curly()}} of the
  original are read as ``{{`` / ``}}``. The comparison is positional: the original
  text around each click URL must match exactly, and the original's text where a
  click URL now stands must be the stored destination (for HTML, the attribute value
  as html5lib's HTML5 tokenizer decodes it, trimmed of C0 controls and spaces as the URL
  parser trims: ``&amp;`` vs ``&`` does not matter, ``&timestamp=`` stays; verbatim for
  text/plain). In HTML each click URL must be the whole value of an href attribute.
  All tokens of a message share one message key + template id, the pixels too.
* with ``trap=True`` (``[verdicts] trap_link``) each changed HTML part holds exactly one
  hidden trap link, taken out before the comparison: an empty
  ``<a href="{tracking_url}/c/<token>" style="display:none!important" aria-hidden="true"
  tabindex="-1"></a>`` (a line break may stand before `` style``) right after ``<body>``
  (after the top pixel); its link is the last one stored, ``{tracking_url}/``. With
  ``trap=False`` there is none.
* only when that comparison fails for a 7bit/8bit/binary HTML part (where the
  rewriter must fold lines over 998 octets), line breaks inside tags are dropped on
  both sides and the comparison is made again.
"""
from __future__ import annotations

import codecs
import email
import quopri
import re
from collections.abc import Iterator
from email.message import Message
from email.policy import compat32
from typing import Optional

MAX_LINE = 998
# Message key (22: 8 naming its record's bucket, 14 of its own) + template id (12), then
# the link index in base 36. Written out, not imported: the oracle stays independent.
TOKEN_PREFIX = 34
SEALED = ("multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
          "application/x-pkcs7-mime")
PLAIN_CTE = ("7bit", "8bit", "binary", "")
MARKER = "\uffff"  # a noncharacter: stands for a click URL while tags are normalised
CURLIES = (("{{opening_double_curly()}}", "{{"), ("{{closing_double_curly()}}", "}}"))


class OracleError(AssertionError):
    """The rewritten message differs from the original beyond tracking."""


def assert_only_tracking_changed(original: bytes, rewritten: bytes, tracking_url: str,
                                 stored_links: list[str], trap: bool = False) -> None:
    tracking_url = tracking_url.rstrip("/")
    _check_line_lengths(original, rewritten)
    old = email.message_from_bytes(original, policy=compat32)
    new = email.message_from_bytes(rewritten, policy=compat32)
    expected_headers = [(k, v) for k, v in old.items() if k.lower() != "x-msys-api"]
    if new.get_all("x-msys-api"):
        raise OracleError("an X-MSYS-API header is still there")
    if new.items() != expected_headers:
        raise OracleError(f"top-level headers differ:\n{_diff(expected_headers, new.items())}")
    keys: set[str] = set()
    changed: list[tuple[bytes, bytes]] = []
    _compare(old, new, "1", sealed=False, tracking_url=tracking_url, stored_links=stored_links,
             keys=keys, changed=changed, trap=trap)
    if len(keys) > 1:
        raise OracleError(f"tracking tokens with different message keys/templates: {sorted(keys)}")
    _check_skeleton(original, rewritten, changed)


# ------------------------------------------------------------------ structure
def _compare(old: Message, new: Message, path: str, *, sealed: bool, tracking_url: str,
             stored_links: list[str], keys: set[str], changed: list[tuple[bytes, bytes]],
             trap: bool = False) -> None:
    if path != "1" and old.items() != new.items():
        raise OracleError(f"part {path}: headers differ:\n{_diff(old.items(), new.items())}")
    for what, get in (("content type", Message.get_content_type),
                      ("charset", Message.get_content_charset),
                      ("Content-Transfer-Encoding", lambda m: m.get("content-transfer-encoding"))):
        if get(old) != get(new):
            raise OracleError(f"part {path}: {what} {get(old)!r} became {get(new)!r}")
    if old.is_multipart() != new.is_multipart():
        raise OracleError(f"part {path}: multipart-ness changed")
    ctype = old.get_content_type()
    if old.is_multipart():
        if old.preamble != new.preamble or old.epilogue != new.epilogue:
            raise OracleError(f"part {path}: preamble or epilogue changed")
        old_children, new_children = old.get_payload(), new.get_payload()
        if len(old_children) != len(new_children):
            raise OracleError(f"part {path}: {len(old_children)} children became {len(new_children)}")
        inner_sealed = sealed or ctype in SEALED or old.get_content_maintype() == "message"
        for number, (o, n) in enumerate(zip(old_children, new_children), 1):
            _compare(o, n, f"{path}.{number}", sealed=inner_sealed, tracking_url=tracking_url,
                     stored_links=stored_links, keys=keys, changed=changed, trap=trap)
        return
    old_raw, new_raw = raw_payload(old), raw_payload(new)
    if not (not sealed and eligible(old)):
        if old_raw != new_raw:
            raise OracleError(f"part {path} ({ctype}) must keep its bytes but changed")
        if old.get_payload(decode=True) != new.get_payload(decode=True) or decoded_bytes(old) != decoded_bytes(new):
            raise OracleError(f"part {path} ({ctype}) must keep its decoded bytes but changed")
        return
    if old_raw == new_raw:
        return
    changed.append((old_raw, new_raw))
    _check_text(old, new, path, tracking_url, stored_links, keys, trap)


def eligible(part: Message) -> bool:
    """A text/html or text/plain leaf that is not an attachment (DESIGN: "per text part
    that is not an attachment"); the caller excludes everything under sealed parts."""
    if part.get_content_type() not in ("text/html", "text/plain"):
        return False
    disposition = str(part.get("content-disposition", "")).split(";")[0].strip().lower()
    return disposition != "attachment" and part.get_filename() is None and part.get_param("name") is None


def raw_payload(part: Message) -> bytes:
    """The part body exactly as in the message (the parser keeps 8-bit bytes as
    surrogate escapes and keeps each line's own line end)."""
    payload = part._payload  # noqa: SLF001 - the raw, undecoded text is what we compare
    if isinstance(payload, list):
        raise TypeError("multipart has no raw payload")
    return (payload or "").encode("ascii", "surrogateescape")


def _check_skeleton(original: bytes, rewritten: bytes, changed: list[tuple[bytes, bytes]]) -> None:
    """Cut the changed payloads out of both bodies; what is left must be identical."""
    def cut(data: bytes, payloads: list[bytes]) -> list[bytes]:
        pieces, pos = [], 0
        for payload in payloads:
            at = data.find(payload, pos)
            if at < 0:
                raise OracleError("a changed part's payload cannot be located in the raw message")
            pieces.append(data[pos:at])
            pos = at + len(payload)
        pieces.append(data[pos:])
        return pieces

    # The top-level header block is compared header by header above (X-MSYS-API goes).
    old_pieces = cut(split_message(original)[2], [o for o, _ in changed])
    new_pieces = cut(split_message(rewritten)[2], [n for _, n in changed])
    for number, (a, b) in enumerate(zip(old_pieces, new_pieces)):
        if a != b:
            raise OracleError(f"bytes outside the changed parts differ (stretch {number}): "
                              f"{_first_difference(a, b)}")


def _check_line_lengths(original: bytes, rewritten: bytes) -> None:
    known = set(original.split(b"\n"))
    for number, line in enumerate(rewritten.split(b"\n"), 1):
        size = len(line.rstrip(b"\r"))
        if size > MAX_LINE and line not in known:
            raise OracleError(f"line {number} is {size} octets (> {MAX_LINE})")


# ------------------------------------------------------------------ text
def decoded_bytes(part: Message) -> bytes:
    """The part's decoded body. Quoted-printable is decoded as RFC 2045 6.7 (3) says:
    white space at the end of an encoded line is transport padding and is deleted
    (the stdlib keeps it); every other encoding is the stdlib's own decoding."""
    if str(part.get("content-transfer-encoding", "")).strip().lower() == "quoted-printable":
        lines = raw_payload(part).splitlines(keepends=True)
        stripped = [line.rstrip(b"\r\n").rstrip(b" \t") + line[len(line.rstrip(b"\r\n")):] for line in lines]
        return quopri.decodestring(b"".join(stripped))
    return part.get_payload(decode=True) or b""


def decode_text(part: Message) -> str:
    data = decoded_bytes(part)
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "latin-1"
    try:
        return data.decode(charset, "surrogateescape")
    except UnicodeDecodeError as exc:
        raise OracleError(f"{part.get_content_type()} part does not decode as {charset}: {exc}") from None


def _check_text(old: Message, new: Message, path: str, tracking_url: str,
                stored_links: list[str], keys: set[str], trap: bool = False) -> None:
    is_html = old.get_content_subtype() == "html"
    before = decode_text(old)
    for escape, plain in CURLIES:
        before = before.replace(escape, plain)
    after = decode_text(new)
    after = _remove_pixels(after, tracking_url, keys, path, is_html)
    after = _remove_trap(after, tracking_url, stored_links, keys, path, is_html and trap)
    segments, indexes = _split_clicks(after, tracking_url, keys, path, is_html)
    if tracking_url + "/" in "".join(segments):
        raise OracleError(f"part {path}: a tracking URL that is not a well-formed click or pixel")
    for index in indexes:
        if index >= len(stored_links):
            raise OracleError(f"part {path}: link index {index} but only {len(stored_links)} stored")
    destinations = [stored_links[i] for i in indexes]
    problem = _match(before, segments, destinations, is_html)
    if problem and is_html and str(old.get("content-transfer-encoding", "7bit")).strip().lower() in PLAIN_CTE:
        # Lines over 998 octets are folded inside tags: forgive line breaks in tags,
        # on both sides, and only here. The click URLs stand inside tags, so the
        # segments are joined with a marker first for the tags to be whole.
        unbroken = _unbreak_tags(MARKER.join(segments)).split(MARKER)
        if len(unbroken) == len(segments) and not _match(_unbreak_tags(before), unbroken, destinations, is_html):
            problem = None
    if problem:
        raise OracleError(f"part {path}: {problem}")


PIXEL_TAG = r"<img\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>"


def _remove_pixels(text: str, tracking_url: str, keys: set[str], path: str, is_html: bool) -> str:
    src = re.compile(r"""\bsrc\s*=\s*["']?%s/([io])/([A-Za-z0-9_-]+)["'\s/>]""" % re.escape(tracking_url))
    out, pos, seen = [], 0, []
    for tag in re.finditer(PIXEL_TAG, text, re.IGNORECASE):
        found = src.search(tag.group())
        if not found:
            continue
        if not is_html:
            raise OracleError(f"part {path}: an open pixel in a text/plain part")
        kind, token = found.groups()
        if len(token) != TOKEN_PREFIX:
            raise OracleError(f"part {path}: open pixel token {token!r} is not {TOKEN_PREFIX} characters")
        keys.add(token)
        seen.append(kind)
        out += (text[pos:tag.start()],)
        pos = tag.end()
    out.append(text[pos:])
    if is_html and seen not in ([], ["i", "o"]):
        raise OracleError(f"part {path}: open pixels {seen}, expected none or one /i/ then one /o/")
    return "".join(out)


def _remove_trap(text: str, tracking_url: str, stored_links: list[str], keys: set[str],
                 path: str, expected: bool) -> str:
    """The text without its hidden trap link (exactly one when expected, else none)."""
    trap = re.compile(r'<a href="%s/c/([A-Za-z0-9_-]{%d})([0-9a-z]{1,4})"(?:\r?\n)? '
                      r'style="display:none!important" aria-hidden="true" tabindex="-1"></a>'
                      % (re.escape(tracking_url), TOKEN_PREFIX))
    found = list(trap.finditer(text))
    if not expected:
        if found:
            raise OracleError(f"part {path}: a trap link, but none was asked for")
        return text
    if len(found) != 1:
        raise OracleError(f"part {path}: {len(found)} trap links, expected one")
    match = found[0]
    if not re.search(r"<(?:body|/head|html)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>\s*$",
                      text[:match.start()], re.IGNORECASE) and match.start() != 0:
        raise OracleError(f"part {path}: the trap link is not right after <body>: "
                          f"{text[max(0, match.start() - 60):match.end()]!r}")
    index = int(match.group(2), 36)
    if index != len(stored_links) - 1 or stored_links[index] != tracking_url + "/":
        raise OracleError(f"part {path}: the trap link is link {index}, not the last stored "
                          f"link {tracking_url}/")
    keys.add(match.group(1))
    return text[:match.start()] + text[match.end():]


def _split_clicks(text: str, tracking_url: str, keys: set[str], path: str,
                  is_html: bool) -> tuple[list[str], list[int]]:
    """The text between click URLs, and each click URL's link index."""
    click = re.compile(r"%s/c/([A-Za-z0-9_-]{%d})([0-9a-z]{1,4})(?![A-Za-z0-9_-])"
                       % (re.escape(tracking_url), TOKEN_PREFIX))
    segments, indexes, pos = [], [], 0
    for found in click.finditer(text):
        if is_html:
            _check_whole_href(text, found.start(), found.end(), path)
        keys.add(found.group(1))
        segments.append(text[pos:found.start()])
        indexes.append(int(found.group(2), 36))
        pos = found.end()
    segments.append(text[pos:])
    return segments, indexes


def _check_whole_href(text: str, start: int, end: int, path: str) -> None:
    head = re.search(r"""\bhref\s*=\s*(["']?)$""", text[max(0, start - 64):start], re.IGNORECASE)
    if head is None:
        raise OracleError(f"part {path}: a click URL that is not an href value: "
                          f"{text[max(0, start - 40):end + 10]!r}")
    quote = head.group(1)
    follow = text[end:end + 1]
    if (quote and follow != quote) or (not quote and follow not in (" ", "\t", "\r", "\n", ">")):
        raise OracleError(f"part {path}: a click URL that is only part of an href value: "
                          f"{text[max(0, start - 20):end + 40]!r}")


def _match(before: str, segments: list[str], destinations: list[str], is_html: bool) -> Optional[str]:
    """None if ``before`` is segments[0] + url0 + segments[1] + ... with each url
    reading as its destination; else what is wrong."""
    pos = 0
    if not before.startswith(segments[0]):
        return "text differs before the first change: " + _first_difference(
            before[:len(segments[0]) + 80], segments[0])
    pos = len(segments[0])
    for number, destination in enumerate(destinations):
        following = segments[number + 1]
        last = number + 1 == len(destinations)
        if last:
            if not before.endswith(following) or len(before) - len(following) < pos:
                return (f"text differs after the last change: the original ends with "
                        f"{before[-80:]!r}, the rewritten part with {following[-80:]!r}")
            at = len(before) - len(following)
        else:
            at = before.find(following, pos) if following else pos
            if at < 0:
                return (f"text differs after click URL {number} ({destination}): "
                        f"{_first_difference(before[pos:pos + len(following) + 200], following)}")
        written = before[pos:at]
        url = attribute_value(written).strip(URL_STRIP) if is_html else written
        if url != destination:
            return f"click URL {number} stands where the original has {written!r}, not {destination!r}"
        pos = at + len(following)
    if not destinations and before != segments[0]:
        return "text differs: " + _first_difference(before, segments[0])
    return None


URL_STRIP = "".join(map(chr, range(0x21)))


def attribute_value(written: str) -> str:
    """An attribute value as written, decoded the way a browser decodes it (html5lib)."""
    if "&" not in written and "\x00" not in written:
        return written
    from html5lib._tokenizer import HTMLTokenizer
    from html5lib.constants import tokenTypes

    quote = "'" if '"' in written else '"'
    for token in HTMLTokenizer(f"<a x={quote}{written}{quote}>"):
        if token["type"] == tokenTypes["StartTag"]:
            return str(token["data"]["x"])
    raise OracleError(f"html5lib read no tag around {written!r}")


def _unbreak_tags(text: str) -> str:
    return re.sub(r"<[^<>]*>", lambda tag: re.sub(r"\r?\n", "", tag.group()), text)


# ------------------------------------------------------------------ messages
def _first_difference(a, b) -> str:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"at {index}: {a[max(0, index - 30):index + 50]!r} vs {b[max(0, index - 30):index + 50]!r}"
    return f"lengths {len(a)} vs {len(b)}: tails {a[-60:]!r} vs {b[-60:]!r}"


def _diff(expected, actual) -> str:
    lines = [f"- {item!r}" for item in expected if item not in actual]
    lines += [f"+ {item!r}" for item in actual if item not in expected]
    return "\n".join(lines) or "(same items, different order)"


def walk_leaves(message: Message) -> Iterator[Message]:
    for part in message.walk():
        if not part.is_multipart():
            yield part


# ------------------------------------------------------------------ the milter's view
HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def split_message(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes, bytes]:
    """(headers as (name, raw bytes with line ends), separator, body), cut as an MTA does:
    continuation lines belong to their header; a line that is not a header ends the
    header block (it and what follows are the body); a leading mbox "From " line is
    dropped, as sendmail -t does."""
    lines = raw.splitlines(keepends=True)
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    headers: list[tuple[str, bytes]] = []
    for number, line in enumerate(lines):
        if line in (b"\r\n", b"\n"):
            return headers, line, b"".join(lines[number + 1:])
        if line[:1] in (b" ", b"\t") and headers:
            name, data = headers[-1]
            headers[-1] = (name, data + line)
            continue
        match = HEADER_LINE.match(line)
        if match is None:
            return headers, b"", b"".join(lines[number:])
        headers.append((match.group(1).decode("ascii"), line))
    return headers, b"", b""


def milter_view(raw: bytes, fold: str = "\r\n") -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body as a milter receives them: (name, value) with the value's
    leading white space removed and its folding kept (line ends as ``fold``), the
    body with its own line ends. Values are decoded as UTF-8 with replacement, as
    the pymilter adapter does."""
    headers, _, body = split_message(raw)
    view = []
    for name, data in headers:
        value = data[len(name):].lstrip(b" \t").removeprefix(b":")
        value = re.sub(rb"\r?\n", fold.encode(), value.lstrip().rstrip(b"\r\n"))
        view.append((name, value.decode("utf-8", "replace")))
    return view, body


def apply_changes(raw: bytes, delete_headers: list[tuple[str, int]], body: Optional[bytes]) -> bytes:
    """The message the MTA delivers: headers deleted by (name, 1-based index among the
    headers of that name, counted after earlier deletions) and the body replaced."""
    headers, separator, old_body = split_message(raw)
    for name, index in delete_headers:
        seen = 0
        for position, (header, _) in enumerate(headers):
            if header.lower() == name.lower():
                seen += 1
                if seen == index:
                    del headers[position]
                    break
        else:
            raise AssertionError(f"no header {name} #{index} to delete")
    prefix = raw[:raw.index(headers[0][1])] if headers and raw.startswith(b"From ") else b""
    return prefix + b"".join(data for _, data in headers) + separator + (old_body if body is None else body)
