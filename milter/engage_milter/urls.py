"""Which URLs are tracked: RFC 3986 well-formed http(s) URLs of at most 4096 bytes.

Anything else (mailto:, tel:, #, relative, javascript:, templates like {{url}}, spaces,
bad percent-escapes, non-ASCII) is left as the sender wrote it: a link we cannot
redirect with a plain HTTP 302 must not be touched.
"""
from __future__ import annotations

import re

MAX_URL_BYTES = 4096
_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@%"
# Used on ASCII only (is_trackable checks first), where these classes already hold both
# cases: spelling the scheme's case out instead of re.IGNORECASE makes it 3x faster.
WELL_FORMED = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://"
    r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:%]*@)?"               # userinfo
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)"  # host (reg-name or IP literal)
    r"(?::[0-9]*)?"                                         # port
    rf"(?:/[{_CHARS}/]*)?"                                  # path
    rf"(?:\?[{_CHARS}/?]*)?"                                # query
    rf"(?:#[{_CHARS}/?]*)?",                                # fragment
)
BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A URL in plain text: greedy over URL characters, trailing punctuation trimmed after.
IN_TEXT = re.compile(rf"\bhttps?://[{_CHARS}/?#\[\]]+", re.IGNORECASE)
TRAILING = ".,;:!?'\"*"
CLOSERS = {")": "(", "]": "["}


def is_trackable(url: str) -> bool:
    """True for a well-formed http(s) URL of at most 4096 bytes."""
    return (
        len(url) <= MAX_URL_BYTES
        and url.isascii()
        and WELL_FORMED.fullmatch(url) is not None
        and ("%" not in url or BAD_PERCENT.search(url) is None)
    )


def trim_text_url(candidate: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets that end a URL in prose."""
    url = candidate
    while url:
        last = url[-1]
        if last in TRAILING:
            url = url[:-1]
        elif last in CLOSERS and url.count(last) > url.count(CLOSERS[last]):
            url = url[:-1]
        else:
            return url
    return url
