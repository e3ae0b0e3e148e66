"""textscan: its shortcut (trim only URLs that end in something trimmable) finds what
trimming every URL finds."""
import random

from engage_milter import textscan
from engage_milter.htmlscan import LinkSite
from engage_milter.urls import IN_TEXT, is_trackable, trim_text_url


def _reference(text: str) -> list[LinkSite]:
    sites = []
    for match in IN_TEXT.finditer(text):
        url = trim_text_url(match.group())
        following = text[match.end():match.end() + 1]
        if following and following not in textscan.ENDS_URL:
            continue
        if is_trackable(url):
            sites.append(LinkSite(match.start(), match.start() + len(url), url, "", False))
    return sites


def test_scan_matches_trimming_every_url():
    pieces = ["https://a.example/x", "http://b.example/(y)", "https://c.example/[z]", ".", ",", ")", "]",
              "(", "'", '"', "*", "!", "?", ";", ":", " ", "\n", "<", ">", "ü", "x", "%", "%zz", "#f"]
    rnd = random.Random(5)
    for _ in range(5000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
        assert textscan.scan(text) == _reference(text), text
