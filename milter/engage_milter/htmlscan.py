"""Find what tracking changes in an HTML body, without parsing it into a tree.

Returns link sites (the exact span of each trackable href value) and where the two
open pixels go; the caller splices text there and nothing else changes. Scanned:
``<a href>``, ``<area href>`` and VML elements such as ``<v:roundrect href>`` inside
Outlook conditional comments. Skipped: ordinary comments, script/style/title/textarea
contents, links opted out with ``data-msys-clicktrack="0"`` or ``data-smtpd-no-track``.
Works on any str whose ASCII characters are the HTML's (a latin-1 view of the bytes
for ASCII-compatible charsets), so offsets map 1:1 to the part's decoded bytes.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

from .urls import is_trackable

MAX_LINK_NAME_BYTES = 63
TOKENS = re.compile(
    r"<!--(?:-?>|(?!\[if).*?-->)"                  # comment, <!--> too (conditional ones are scanned)
    r"|<(?P<raw>script|style|title|textarea)\b.*?</(?P=raw)\s*>"  # raw text elements
    r"|<(?P<tag>a|area|body|html|v:[a-z]+|/body|/html|/head)(?=[\s/>])"
    # Attributes up to the first ">" outside quotes, as runs of plain characters between
    # quoted values (one step per run, not per character: a quarter of the scan faster).
    r"(?P<attrs>[^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*)>",
    re.IGNORECASE | re.DOTALL,
)
ATTR = re.compile(
    # An unquoted value runs to whitespace or ">" (HTML5 keeps '=' and quotes in it).
    r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>][^\s>]*)))?""",
)


class LinkSite(NamedTuple):  # a tuple: one per link per message, built fast
    """A trackable URL in the text: replace [start, end) with the tracked URL."""

    start: int
    end: int
    url: str
    name: str = ""
    quoted: bool = True


@dataclass
class HtmlScan:
    links: list[LinkSite]
    top_pixel: int  # insert position for the initial_open pixel
    bottom_pixel: int  # insert position for the open pixel
    skipped: int = 0  # links with an href left as they are (not http(s), opted out, ...)


def scan(text: str, decode_attr: Callable[[str], str] = lambda value: value) -> HtmlScan:
    """Link sites and pixel positions. ``decode_attr`` turns the view's text into real text."""
    links: list[LinkSite] = []
    vml: list[LinkSite] = []
    firsts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    skipped = 0
    for match in TOKENS.finditer(text):
        tag = (match.group("tag") or "").lower()
        if not tag:
            continue
        firsts.setdefault(tag, match.end())
        lasts[tag] = match.start()
        if tag in ("a", "area") or tag.startswith("v:"):
            site = _link_site(match, decode_attr)
            if site is not None:
                (vml if tag.startswith("v:") else links).append(site)
            elif "href" in match.group("attrs").lower():
                skipped += 1
    if vml:
        links += _name_vml_twins(vml, links)
        links.sort(key=lambda site: site.start)
    return HtmlScan(links, _top(firsts), lasts.get("/body", lasts.get("/html", len(text))), skipped)


def _top(firsts: dict[str, int]) -> int:
    for tag in ("body", "/head", "html"):
        if tag in firsts:
            return firsts[tag]
    return 0


WANTED = {"href", "data-smtpd-no-track", "data-msys-clicktrack", "data-msys-linkname"}


def _link_site(match: "re.Match[str]", decode_attr: Callable[[str], str]) -> Optional[LinkSite]:
    # The first of each wanted attribute: the first of duplicate attributes wins, as in browsers.
    attrs: dict[str, re.Match[str]] = {}
    for attr in ATTR.finditer(match.string, match.start("attrs"), match.end("attrs")):
        name = attr.group(1).lower()
        if name in WANTED and name not in attrs:
            attrs[name] = attr
    href = attrs.get("href")
    if href is None or "data-smtpd-no-track" in attrs:
        return None
    clicktrack = attrs.get("data-msys-clicktrack")
    if clicktrack is not None and _value(clicktrack).strip() == "0":
        return None
    url = unescape(_value(href)).strip()
    if not is_trackable(url):
        return None
    group = href.lastindex  # a value's group is the match's last: 2 or 3 quoted, 4 unquoted
    assert group is not None  # group 1, the name, always matches
    return LinkSite(href.start(group), href.end(group), url, _link_name(attrs, decode_attr), group != 4)


def _value(attr: "re.Match[str]") -> str:
    index = attr.lastindex or 1  # never None: group 1, the name, always matches
    return attr.group(index) if index != 1 else ""


def unescape(value: str) -> str:
    """html.unescape, with a fast path for the common case: only &amp; in a query string."""
    if "&" not in value:
        return value
    if value.count("&") == value.count("&amp;"):
        return value.replace("&amp;", "&")
    return html.unescape(value)


def _link_name(attrs: dict[str, "re.Match[str]"], decode_attr: Callable[[str], str]) -> str:
    if "data-msys-linkname" not in attrs:
        return ""
    name = unescape(decode_attr(_value(attrs["data-msys-linkname"]))).strip()
    return name.encode("utf-8")[:MAX_LINK_NAME_BYTES].decode("utf-8", "ignore")


def _name_vml_twins(vml: list[LinkSite], links: list[LinkSite]) -> list[LinkSite]:
    """An Outlook VML button takes the link name of its HTML twin (same destination)."""
    names: dict[str, str] = {}
    for site in links:
        names.setdefault(site.url, site.name)
    return [LinkSite(s.start, s.end, s.url, s.name or names.get(s.url, ""), s.quoted) for s in vml]
