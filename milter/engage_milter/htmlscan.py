"""Find what tracking changes in an HTML body, reading it as an HTML5 tokenizer does.

Returns link sites (the exact span of each trackable href value) and where the two
open pixels go; the caller splices text there and nothing else changes. Scanned:
``<a href>``, ``<area href>`` and VML elements such as ``<v:roundrect href>``, also
inside Outlook conditional comments (``<!--[if mso]>``), which Outlook reads as markup.
Skipped as a browser skips them: comments (``-->``, ``--!>``, ``<!-->``), bogus comments
and doctypes, the contents of script (with its ``<!--`` escapes), style, xmp, iframe,
noembed, noframes, title and textarea, everything after ``<plaintext>``, CDATA sections
inside svg/math, and a tag still open at the end of the text. Links opted out with
``data-msys-clicktrack="0"`` or ``data-smtpd-no-track`` are left alone. Attribute values
are decoded by the HTML5 attribute rules (charrefs.py).

Linear in the text, whatever it holds: every construct is matched by a pattern that
cannot fail once it has started (an unterminated one runs to the end of the text, as
in the tokenizer), so no character is read twice by the tokenizer (its patterns and
text states: engage_milter.htmltokens).
Works on any str whose ASCII characters are the HTML's (a latin-1 view of the bytes
for ASCII-compatible charsets), so offsets map 1:1 to the part's decoded bytes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

from . import deadline, foreign
from .charrefs import unescape_attribute
from .htmltokens import (
    ATTRIBUTE,
    ATTRS,
    CC,
    END,
    FOREIGN,
    GT,
    NAME,
    NOTED,
    RAWTEXT,
    TOKEN,
    UNQUOTED,
    conditional,
    rest_of_tag,
    script_end,
    self_closing,
)
from .urls import is_trackable

MAX_LINK_NAME_BYTES = 63
WANTED = {"href", "data-smtpd-no-track", "data-msys-clicktrack", "data-msys-linkname"}
URL_STRIP = "".join(map(chr, range(0x21)))  # the URL parser strips C0 controls and space
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
CHECK_EVERY = 1024  # tokens between two deadline checks


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
    trees = [foreign.Tree()]  # the document's; and a fresh one inside a conditional comment
    tree = trees[0]
    size = len(text)
    limit, resume, count = size, -1, 0  # limit, resume: the conditional comment's
    next_token = TOKEN.scanner(text).search  # type: ignore[attr-defined]  # re.Pattern.scanner: undocumented, typeshed lacks it
    foreign_ahead = FOREIGN.search(text) is not None  # then HTML elements are counted
    urls_seen: dict[str, str] = {}
    while True:
        match = next_token()
        name, end, gt = match.group(NAME, END, GT) if match is not None else (None, None, None)
        if match is not None:
            tag_end = match.end()
            if gt is None and name is not None and tag_end < limit:  # a tag of many values
                tag_end, gt = rest_of_tag(text, tag_end, limit)
                next_token = TOKEN.scanner(text, tag_end, limit).search  # type: ignore[attr-defined]  # re.Pattern.scanner: undocumented, typeshed lacks it
        if match is None or gt is None and name is not None:
            if resume < 0:
                break  # the end; a tag still open there is dropped, as the tokenizer drops it
            next_token = TOKEN.scanner(text, resume).search  # type: ignore[attr-defined]  # re.Pattern.scanner: undocumented, typeshed lacks it
            limit, resume = size, -1
            trees.pop()
            tree = trees[-1]
            continue
        count += 1
        if count >= CHECK_EVERY:
            count = 0
            deadline.check()
        if name is None:
            jump = -1
            if match.group(CC) is not None and resume < 0:
                jump, limit, resume = conditional(text, match)
                trees.append(foreign.Tree())
                tree = trees[-1]
            elif tree.stack and tree.cdata_allowed() and text.startswith("<![CDATA[", match.start()):
                jump = text.find("]]>", match.start() + 9, limit)
                jump = limit if jump < 0 else jump + 3
            if jump >= 0:
                next_token = TOKEN.scanner(text, jump, limit).search  # type: ignore[attr-defined]  # re.Pattern.scanner: undocumented, typeshed lacks it
            continue
        tag = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
        if foreign_ahead and not tree.stack:
            tree.note(tag, bool(end))
        if tag not in NOTED and not tree.stack and tag[1:2] != ":":
            continue  # most tags: nothing to note, and the tokenizer goes on as it was
        if end:
            if tag in ("body", "html", "head") and resume < 0:
                firsts.setdefault("/" + tag, tag_end)
                lasts["/" + tag] = match.start()
            if tree.stack:
                tree.end(tag)
            continue
        attrs = (match.start(ATTRS), tag_end - 1)  # up to the '>'
        html = True
        if tree.stack or tag in foreign.ROOTS:
            html = tree.start(tag, text[attrs[0]:attrs[1]] if tag == "font" else "", self_closing(text, *attrs))
        jump = -1
        if tag in ("a", "area") or tag.startswith("v:"):  # svg's <a href> is a link too
            site, has_href = _link_site(text, *attrs, decode_attr, urls_seen)
            if site is not None:
                (vml if tag[0] == "v" else links).append(site)
            elif has_href:
                skipped += 1
        elif not html:
            continue  # an svg/math element: no raw text, no HTML semantics
        elif tag in ("body", "html"):
            if resume < 0:
                firsts.setdefault(tag, tag_end)
        elif tag in RAWTEXT:
            end_tag = RAWTEXT[tag].search(text, tag_end, limit)
            jump = limit if end_tag is None else end_tag.start()
        elif tag == "script":
            jump = script_end(text, tag_end, limit)
        elif tag == "plaintext":  # nothing after it is markup
            if resume < 0:
                lasts.setdefault("/body", match.start())
            jump = limit
        if jump >= 0:
            next_token = TOKEN.scanner(text, jump, limit).search  # type: ignore[attr-defined]  # re.Pattern.scanner: undocumented, typeshed lacks it
    if vml:
        links += _name_vml_twins(vml, links)
        links.sort(key=lambda site: site.start)
    # With no </body> or </html>, the bottom pixel goes before the text's last line end:
    # after it, the part (and often the message) would end in a line without one.
    end = size - (2 if text.endswith("\r\n") else text.endswith("\n"))
    return HtmlScan(links, _top(firsts), lasts.get("/body", lasts.get("/html", end)), skipped)


def _top(firsts: dict[str, int]) -> int:
    for tag in ("body", "/head", "html"):
        if tag in firsts:
            return firsts[tag]
    return 0


def _link_site(text: str, start: int, end: int, decode_attr: Callable[[str], str],
               urls_seen: dict[str, str]) -> tuple[Optional[LinkSite], bool]:
    """The link site of the tag whose attributes are text[start:end], if tracked; and
    whether it has an href at all. ``urls_seen``: one str per distinct URL (a body with
    a million links to a few URLs keeps a few strings)."""
    attrs: dict[str, re.Match[str]] = {}
    for attr in ATTRIBUTE.finditer(text, start, end):
        name = attr.group(1)
        name = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
        if name in WANTED and name not in attrs:  # the first of duplicates wins, as in browsers
            attrs[name] = attr
    href = attrs.get("href")
    if href is None:
        return None, False
    if "data-smtpd-no-track" in attrs:
        return None, True
    clicktrack = attrs.get("data-msys-clicktrack")
    if clicktrack is not None and unescape_attribute(_value(clicktrack)).strip(URL_STRIP) == "0":
        return None, True
    url = unescape_attribute(_value(href)).strip(URL_STRIP)
    if not is_trackable(url):
        return None, True
    url = urls_seen.setdefault(url, url)
    group = href.lastindex or 0  # a value's group is the match's last: dq, sq or uq
    quoted = group != UNQUOTED
    return LinkSite(href.start(group), href.end(group), url, _link_name(attrs, decode_attr), quoted), True


def _value(attr: re.Match[str]) -> str:
    index = attr.lastindex or 1  # never None: group 1, the name, always matches
    return attr.group(index) if index != 1 else ""


def _link_name(attrs: dict[str, re.Match[str]], decode_attr: Callable[[str], str]) -> str:
    if "data-msys-linkname" not in attrs:
        return ""
    name = unescape_attribute(decode_attr(_value(attrs["data-msys-linkname"]))).strip()
    return name.encode("utf-8", "replace")[:MAX_LINK_NAME_BYTES].decode("utf-8", "ignore")


def _name_vml_twins(vml: list[LinkSite], links: list[LinkSite]) -> list[LinkSite]:
    """An Outlook VML button takes the link name of its HTML twin (same destination)."""
    names: dict[str, str] = {}
    for site in links:
        names.setdefault(site.url, site.name)
    return [LinkSite(s.start, s.end, s.url, s.name or names.get(s.url, ""), s.quoted) for s in vml]
