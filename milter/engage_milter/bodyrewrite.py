"""Rewrite a message body for tracking by splicing: tracked URLs, open pixels, {{ }} escapes.

Two steps, because tokens depend on the full link list: ``scan`` finds every change
site in every eligible part; ``render`` builds the new body from the tokens. Each part
keeps its charset and transfer encoding; bytes outside the change sites are untouched;
7bit/8bit lines stay within 998 octets (a line break is put inside a tag, never in
text: engage_milter.linefold). Anything that cannot be round-tripped raises CannotRewrite before a byte changes.
With ``trap``, every HTML part that is rewritten anyway also gets the hidden trap link
(TRAP, right after ``<body>``): one more tracked link, the last one, named
engage.store.links.TRAP_LINK_NAME, that no person can see, focus or click.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from email.message import Message
from operator import itemgetter
from typing import Callable, NamedTuple, Optional

from engage.store.layout import TRACKED_PATHS
from engage.store.links import TRAP_LINK_NAME
from engage.store.records import Link

from . import deadline, htmlscan, mimewalk, textscan
from .htmlscan import LinkSite
from .linefold import MAX_LINE, fold, max_line
from .transfer import PLAIN, CannotRewrite, Codec, Splice, splice

CURLY = re.compile(r"\{\{(opening|closing)_double_curly\(\)\}\}")
CURLY_TEXT = {"opening": "{{", "closing": "}}"}
NOT_ASCII_COMPATIBLE = ("iso2022", "utf_7", "utf_16", "utf_32", "hz", "cp037", "cp500")
PIXEL = ('<img src="{src}" width="1" height="1" border="0" alt=""'
         ' style="height:1px!important;width:1px!important;border:0!important;'
         'margin:0!important;padding:0!important"/>')
# Empty, so nothing to see or click even where styles are stripped; hidden from screen
# readers and from the keyboard. Scanners that follow every href follow it.
TRAP = '<a href="{href}" style="display:none!important" aria-hidden="true" tabindex="-1"></a>'


@dataclass(frozen=True)
class Urls:
    """How tracked URLs are spelled: click URL for link index i, and the two pixels."""

    click: Callable[[int], str]
    top_pixel: str
    bottom_pixel: str


class _Edit(NamedTuple):
    start: int
    end: int
    text: str
    breakable: int  # offset in text where a line break may go, -1 for none


@dataclass
class _Part:
    part: mimewalk.TextPart
    codec: Codec
    view: str
    latin1: bool
    sites: list[tuple[LinkSite, int]] = field(default_factory=list)  # (site, link index)
    pixels: Optional[tuple[int, int]] = None
    curlies: list[_Edit] = field(default_factory=list)
    top: int = 0  # right after <body>: where the top pixel and the trap link go
    trap: bool = False


def _codec_name(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise CannotRewrite(f"unknown charset {charset!r}") from None


class BodyRewrite:
    """The change sites of one message body; ``links`` is the message's link list."""

    def __init__(self, headers: Message, body: bytes, *, click: bool, opens: bool,
                 text_links: bool, tracking_url: str, trap: bool = False) -> None:
        self.body = body
        self.links: list[Link] = []
        self.notes: list[str] = []
        self.skipped = 0  # HTML links left untracked, for the log
        self._index: dict[tuple[str, str], int] = {}
        self._parts: list[_Part] = []
        text_parts, self.notes = mimewalk.text_parts(headers, body)
        for text_part in text_parts:
            part = self._open(text_part)
            if any(tracking_url + path in part.view for path in TRACKED_PATHS):
                raise CannotRewrite("message is already tracked")
            self._scan(part, click, opens, text_links)
            self._parts.append(part)
        self.trap_index: Optional[int] = None
        if trap and click:
            self._add_trap(tracking_url)

    def _add_trap(self, tracking_url: str) -> None:
        """The trap link goes into the HTML parts that change anyway, as the last link."""
        parts = [part for part in self._parts
                 if part.part.subtype == "html" and (part.sites or part.pixels)]
        if parts:
            self.trap_index = len(self.links)
            self.links.append(Link(tracking_url + "/", TRAP_LINK_NAME))
            for part in parts:
                part.trap = True

    @property
    def pixel_count(self) -> int:
        return 2 * sum(1 for part in self._parts if part.pixels is not None)

    @property
    def changes(self) -> bool:
        return any(part.sites or part.pixels or part.curlies for part in self._parts)

    def _open(self, text_part: mimewalk.TextPart) -> _Part:
        codec = Codec(self.body[text_part.start:text_part.end], text_part.cte)
        name = _codec_name(text_part.charset)
        if not name.replace("-", "_").startswith(NOT_ASCII_COMPATIBLE):
            return _Part(text_part, codec, codec.decoded.decode("latin-1"), True)
        try:
            view = codec.decoded.decode(name)
        except UnicodeDecodeError as exc:
            raise CannotRewrite(f"{text_part.charset} part does not decode: {exc.reason}") from None
        if view.encode(name) != codec.decoded:
            raise CannotRewrite(f"{text_part.charset} part does not round-trip")
        return _Part(text_part, codec, view, False)

    def _scan(self, part: _Part, click: bool, opens: bool, text_links: bool) -> None:
        if part.part.subtype == "html":
            charset = part.part.charset
            decode = (lambda value: value.encode("latin-1").decode(charset, "replace")) \
                if part.latin1 else (lambda value: value)
            scan = htmlscan.scan(part.view, decode)
            part.top = scan.top_pixel
            sites = scan.links if click else []
            self.skipped += scan.skipped if click else 0
            if opens:
                part.pixels = (scan.top_pixel, scan.bottom_pixel)
        else:
            sites = textscan.scan(part.view) if click and text_links else []
        part.sites = [(site, self._link_index(site)) for site in sites]
        part.curlies = _curlies(part.view, [(site.start, site.end) for site, _ in part.sites])
        if part.latin1:
            part.view = ""  # rendering splices bytes: the text view (the body's size) can go

    def _link_index(self, site: LinkSite) -> int:
        if site.name == TRAP_LINK_NAME:  # reserved: a sender's link must never read as a trap
            site = LinkSite(site.start, site.end, site.url, "", site.quoted)
            self.notes.append(f"link name {TRAP_LINK_NAME!r} is reserved: dropped")
        key = (site.url, site.name)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.links)
            self.links.append(Link(site.url, site.name))
        return index

    def render(self, urls: Urls) -> bytes:
        """The new body; raises CannotRewrite (nothing changed) if a part cannot take it."""
        splices = []
        clicks = [urls.click(index) for index in range(len(self.links))]
        for part in self._parts:
            edits = self._edits(part, clicks, urls)
            if edits:
                new = part.codec.encode(self._splices(part, edits))
                splices.append(Splice(part.part.start, part.part.end, new))
        return splice(self.body, splices)

    def _edits(self, part: _Part, clicks: list[str], urls: Urls) -> list[_Edit]:
        html = part.part.subtype == "html"
        edits = [
            # In HTML a line may break right after the value; never in a line of prose.
            _Edit(site.start, site.end, clicks[index],
                  len(clicks[index]) + site.quoted if html else -1)
            for site, index in part.sites
        ] + part.curlies
        if part.pixels is not None:
            for at, src in zip(part.pixels, (urls.top_pixel, urls.bottom_pixel)):
                pixel = PIXEL.format(src=src)  # a line may break before the style, never in the URL
                edits.append(_Edit(at, at, pixel, pixel.index(" style")))
        if part.trap and self.trap_index is not None:
            trap = TRAP.format(href=clicks[self.trap_index])
            edits.append(_Edit(part.top, part.top, trap, trap.index(" style")))
        edits.sort(key=itemgetter(0, 1))  # (start, end); stable, so inserts keep their order
        return edits

    def _splices(self, part: _Part, edits: list[_Edit]) -> list[Splice]:
        if part.latin1:
            encoded: dict[str, bytes] = {}  # the same URL at many sites: encoded once
            splices = [Splice(start, end, encoded.get(text) or encoded.setdefault(text, text.encode("ascii")))
                       for start, end, text, _ in edits]
            if part.codec.cte not in PLAIN:
                return splices
            return fold(splices, [e.breakable for e in edits], part.codec)
        new_text = _apply(part.view, edits)
        name = _codec_name(part.part.charset)
        new = new_text.encode(name)
        if max_line(new) > max(MAX_LINE, max_line(part.codec.decoded)) and part.codec.cte in PLAIN:
            raise CannotRewrite("a rewritten line would exceed 998 octets")
        return [Splice(0, len(part.codec.decoded), new)]


def _curlies(view: str, taken: list[tuple[int, int]]) -> list[_Edit]:
    """The Momentum escapes outside link sites; one walk over both (sorted) lists."""
    edits: list[_Edit] = []
    taken = sorted(taken)
    index = 0
    for match in CURLY.finditer(view):
        deadline.check()
        while index < len(taken) and taken[index][1] <= match.start():
            index += 1  # sites that end before this escape can overlap no later one
        if index < len(taken) and taken[index][0] < match.end():
            continue
        edits.append(_Edit(match.start(), match.end(), CURLY_TEXT[match.group(1)], -1))
    return edits


def _apply(text: str, edits: list[_Edit]) -> str:
    out: list[str] = []
    pos = 0
    for edit in edits:
        out += (text[pos:edit.start], edit.text)
        pos = edit.end
    out.append(text[pos:])
    return "".join(out)
