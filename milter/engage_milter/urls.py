"""Which URLs are tracked: RFC 3986 well-formed http(s) URLs of at most 4096 bytes.

Anything else (mailto:, tel:, #, relative, javascript:, templates like {{url}}, spaces,
bad percent-escapes, non-ASCII) is left as the sender wrote it: a link we cannot
redirect with a plain HTTP 302 must not be touched.
"""
from __future__ import annotations

import re

MAX_URL_BYTES = 4096
_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@%"


_USERINFO = r"[A-Za-z0-9\-._~!$&'()*+,;=:%]*@"
_REG_NAME = r"[A-Za-z0-9\-._~!$&'()*+,;=%]+"
# Used on ASCII only (is_trackable checks first), where these classes already hold both
# cases: spelling the scheme's case out instead of re.IGNORECASE makes it 3x faster.
# Each piece is atomic, ``(?=(X))\N``: matched once and never given back (Python 3.9 has
# no atomic groups). A piece is followed by a delimiter its own characters exclude, so
# giving characters back can never lead to a match; but the engine tried, and refusing
# 4000 letters and a space took 1.7 ms.
WELL_FORMED = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://"
    rf"(?:(?=({_USERINFO}))\1)?"  # userinfo
    rf"(?:\[[0-9A-Fa-f:.]+\]|(?=({_REG_NAME}))\2)"  # host (reg-name or IP literal)
    r"(?:(?=(:[0-9]*))\3)?"  # port
    rf"(?:(?=(/[{_CHARS}/]*))\4)?"  # path
    rf"(?:(?=(\?[{_CHARS}/?]*))\5)?"  # query
    rf"(?:(?=(#[{_CHARS}/?]*))\6)?",  # fragment
)
BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A URL in plain text: greedy over URL characters, trailing punctuation trimmed after.
IN_TEXT = re.compile(rf"\bhttps?://[{_CHARS}/?#\[\]]+", re.IGNORECASE)
TRAILING = ".,;:!?'\"*"
CLOSERS = {")": "(", "]": "["}
TRIMMABLE = TRAILING + "".join(CLOSERS)


def is_trackable(url: str) -> bool:
    """True for a well-formed http(s) URL of at most 4096 bytes."""
    return (
        len(url) <= MAX_URL_BYTES
        and url.isascii()
        and WELL_FORMED.fullmatch(url) is not None
        and ("%" not in url or BAD_PERCENT.search(url) is None)
    )


def trim_text_url(candidate: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets that end a URL in prose.

    From the end: punctuation always goes, a closing bracket goes while the URL holds
    more of it than of its opener. Done in C-speed passes (no loop per character), so a
    URL followed by 100,000 ')' costs what its length costs."""
    kept = len(candidate.rstrip(TRIMMABLE))
    if kept == len(candidate):
        return candidate
    tail = candidate[kept:][::-1]  # the trimmable run, last character first
    cut = len(tail)  # how many characters go
    for closer, opener in CLOSERS.items():
        excess = max(0, candidate.count(closer) - candidate.count(opener))
        if tail.count(closer) > excess:  # the (excess+1)-th one from the end stays
            cut = min(cut, _nth(tail, closer, excess + 1) - 1)
    return candidate[:len(candidate) - cut]


def _nth(text: str, char: str, n: int) -> int:
    """How long a prefix of ``text`` holds ``n`` of ``char`` (binary search on counts)."""
    low, high = n, len(text)  # text.count(char, 0, high) >= n
    while low < high:
        middle = (low + high) // 2
        if text.count(char, 0, middle) >= n:
            high = middle
        else:
            low = middle + 1
    return low
