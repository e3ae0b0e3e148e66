"""The HTML5 tokenizer's patterns and text states, for the scan (engage_milter.htmlscan):
tags and their attributes in runs, comments and Outlook conditional comments, the raw
text of script (with its escapes) and of the other raw-text elements. Every pattern
matches up to the end of the text once it has started, so the scan stays linear."""
from __future__ import annotations

import re
from typing import Optional

_S = r"\t\n\f\r "  # HTML white space (not Python's \s)
# A tag's attributes, as the tokenizer reads them, in runs rather than characters: after
# white space or '/', an '=' starts a name; after a name, '=' starts a value, and a quote
# opens one only there; white space, names and quotes in names are one run up to the next
# '=', '/' or '>'. A value left open runs to the end of the text (the tag is then dropped,
# as the tokenizer drops it). Each piece stops where the next one's first character is,
# and every piece can match up to the end of the text ('"[^"]*"?': a run stops only at
# its quote or the end), so a match never fails once it started: nothing is read twice.
_BEFORE_NAME = rf"[{_S}/]*(?:=[^{_S}/>=]*)?[^/>=]*"
_VALUE = rf"=[{_S}]*(?:\"[^\"]*\"?|'[^']*'?|[^{_S}>]*)"
# At most CHUNK values per match: a regex engine keeps a record per repetition until the
# match ends, and a 1 MiB tag made that slow (RAM, not CPU caches); the scan loop goes on
# with TAG_MORE where a chunk ends.
CHUNK = 256
_MORE = rf"(?:(?:{_VALUE}|/){_BEFORE_NAME}){{0,{CHUNK}}}"
TOKEN = re.compile(
    r"<(?:"
    rf"(?P<end>/)?(?P<name>[A-Za-z][^{_S}/>]*)(?P<attrs>{_BEFORE_NAME}{_MORE})(?P<gt>>)?"  # a tag
    r"|!--(?:(?P<cc>(?i:\[if))[^>]*>?|-?>|.*?(?:--!?>|\Z))"  # conditional comment, comment
    r"|[!?][^>]*>?"  # doctype, bogus comment (CDATA outside svg/math), <?...>
    r"|/(?:>|[^A-Za-z>][^>]*>?)"  # </>, bogus comment
    r")",
    re.DOTALL,
)
ATTRIBUTE = re.compile(
    rf"(?P<name>[^{_S}/>][^{_S}/>=]*)[{_S}]*"
    rf"(?:=[{_S}]*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<uq>[^{_S}>]*)))?"
)
TAG_MORE = re.compile(rf"{_MORE}(?P<gt>>)?")
NAME, END, GT, CC, ATTRS = (TOKEN.groupindex[name] for name in ("name", "end", "gt", "cc", "attrs"))
UNQUOTED = ATTRIBUTE.groupindex["uq"]
# Tags that matter outside svg/math (and any "x:name" tag: VML); the rest are skipped.
NOTED = frozenset({"a", "area", "body", "html", "head", "script", "plaintext", "svg", "math",
                   "style", "xmp", "iframe", "noembed", "noframes", "title", "textarea"})
RAWTEXT = {name: re.compile(rf"</(?i:{name})(?=[{_S}/>])")
           for name in ("style", "xmp", "iframe", "noembed", "noframes", "title", "textarea")}
SCRIPT_DATA = re.compile(rf"<!--|</(?i:script)(?=[{_S}/>])")
SCRIPT_ESCAPED = re.compile(rf"-->|</(?i:script)(?=[{_S}/>])|<(?i:script)(?=[{_S}/>])")
SCRIPT_DOUBLE_ESCAPED = re.compile(rf"-->|</(?i:script)(?=[{_S}/>])")
DASHES = re.compile(r"-*")
COMMENT_END = re.compile(r"--!?>")
FOREIGN = re.compile(r"<(?i:svg|math)")


def conditional(text: str, opener: re.Match[str]) -> tuple[int, int, int]:
    """An Outlook conditional comment ``<!--[if mso]>...<![endif]-->``: a comment to a
    browser, markup to Outlook. Its text after the first '>' is scanned as a document of
    its own (from where, up to where), then the scan resumes after the comment (resume)."""
    pos = opener.end()
    end = COMMENT_END.search(text, opener.start() + 4)
    if end is None:
        return pos, len(text), len(text)
    if pos > end.start():  # no '>' before the comment ends: nothing inside
        return end.end(), end.end(), end.end()
    return pos, end.start(), end.end()


def script_end(text: str, pos: int, limit: int) -> int:
    """Where a script element's text ends (its end tag's '<'), by the HTML5 script data
    states: '<!--' escapes, '<script' inside an escape double-escapes, '-->' ends both."""
    while True:
        step = SCRIPT_DATA.search(text, pos, limit)
        if step is None:
            return limit
        if step.group() != "<!--":
            return step.start()
        dashes = DASHES.match(text, step.end(), limit)  # '<!--' leaves two dashes read
        assert dashes is not None  # DASHES matches the empty string too
        pos = dashes.end()
        if text.startswith(">", pos, limit):
            pos += 1
            continue
        while True:  # escaped
            step = SCRIPT_ESCAPED.search(text, pos, limit)
            if step is None:
                return limit
            if step.group() == "-->":
                pos = step.end()
                break
            if step.group()[1] == "/":
                return step.start()
            step = SCRIPT_DOUBLE_ESCAPED.search(text, step.end() + 1, limit)
            if step is None:
                return limit
            pos = step.end() + (step.group() != "-->")
            if step.group() == "-->":
                break


def rest_of_tag(text: str, pos: int, limit: int) -> tuple[int, Optional[str]]:
    """Where a tag that holds more than CHUNK values ends, and its '>' (None: open at the end)."""
    while True:
        more = TAG_MORE.match(text, pos, limit)
        assert more is not None  # TAG_MORE matches the empty string too
        if more.group("gt") is not None or more.end() in (pos, limit):
            return more.end(), more.group("gt")
        pos = more.end()


def self_closing(text: str, start: int, end: int) -> bool:
    """'/>' closes a tag (svg/math only heed it), unless the '/' ends an unquoted value."""
    if not text.endswith("/", 0, end):
        return False
    attributes = list(ATTRIBUTE.finditer(text, start, end))  # svg/math only
    last = attributes[-1] if attributes else None
    return last is None or last.end() < end or last.lastindex != UNQUOTED
