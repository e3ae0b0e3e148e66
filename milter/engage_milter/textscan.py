"""Find trackable http(s) URLs in a text/plain body (as SparkPost tracks text links).

The URL's own characters are replaced and nothing around it: a URL in angle brackets
or followed by a full stop keeps them.
"""
from __future__ import annotations

from .htmlscan import LinkSite
from .urls import IN_TEXT, is_trackable, trim_text_url


def scan(text: str) -> list[LinkSite]:
    sites = []
    for match in IN_TEXT.finditer(text):
        url = trim_text_url(match.group())
        if is_trackable(url):
            sites.append(LinkSite(match.start(), match.start() + len(url), url, "", False))
    return sites
