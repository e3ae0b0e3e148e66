"""Find trackable http(s) URLs in a text/plain body (as SparkPost tracks text links).

The URL's own characters are replaced and nothing around it: a URL in angle brackets
or followed by a full stop keeps them. A URL glued to a character that cannot end one
(``https://x.example/über``) is left alone: a mail client may link the whole run, and
a tracked link with text stuck to it would break.
"""
from __future__ import annotations

from .htmlscan import LinkSite
from .urls import IN_TEXT, TRIMMABLE, is_trackable, trim_text_url

ENDS_URL = " \t\r\n\f\v<>\"'"


def scan(text: str) -> list[LinkSite]:
    sites = []
    for match in IN_TEXT.finditer(text):
        url, end = match.group(), match.end()
        if url[-1] in TRIMMABLE:
            url = trim_text_url(url)
        if end < len(text) and text[end] not in ENDS_URL:
            continue
        if is_trackable(url):
            start = match.start()
            sites.append(LinkSite(start, start + len(url), url, "", False))
    return sites
