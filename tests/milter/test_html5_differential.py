"""The scanner's links are exactly the ones a conforming HTML5 tokenizer (html5lib) reports,
minus those our rules leave alone, on every fixture, Python's email test corpus and
thousands of generated documents.

The reference: html5lib's own tree builder drives its tokenizer (so raw text, script
escapes, CDATA in svg/math and foreign content switch states as in a browser), and
every start tag the tokenizer emits is recorded. A conditional comment (``<!--[if``) is
a comment to html5lib; Outlook reads its text after the first '>' as markup, so that
text is read again as a document of its own, as the scanner reads it. Our rules: an
``a``, ``area`` or VML (``v:*``) start tag with an href, no ``data-smtpd-no-track``, no
``data-msys-clicktrack="0"``, whose value trimmed of C0 controls and spaces is a URL
``urls.is_trackable`` accepts.
"""
from __future__ import annotations

import email
import glob
import os
from email.policy import compat32
from pathlib import Path

import pytest
from html5lib import _tokenizer
from html5lib.constants import tokenTypes
from html5lib.html5parser import HTMLParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage_milter import htmlscan
from engage_milter.urls import is_trackable
from newsletter import newsletter

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = sorted(glob.glob("/usr/lib/python3*/test/test_email/data/msg_*.txt"))
URL_STRIP = "".join(map(chr, range(0x21)))
START_TAG, COMMENT = tokenTypes["StartTag"], tokenTypes["Comment"]


class _Recording(_tokenizer.HTMLTokenizer):
    """html5lib's tokenizer, keeping every start tag and comment it emits, in order."""

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] in (START_TAG, COMMENT):
                self.parser.seen.append(token)
            yield token


class _Parser(HTMLParser):
    def _parse(self, stream, innerHTML=False, container="div", scripting=False, **kwargs):
        # html5lib's own _parse, with the recording tokenizer
        self.innerHTMLMode, self.container, self.scripting = innerHTML, container, scripting
        self.seen = []
        self.tokenizer = _Recording(stream, parser=self, **kwargs)
        self.reset()
        self.mainLoop()


def reference(text: str) -> list[str]:
    parser = _Parser()
    parser.parse(text)
    found: list[str] = []
    for token in parser.seen:
        if token["type"] == COMMENT:
            data = token["data"]
            if data[:3].lower() == "[if" and ">" in data:
                found += reference(data[data.index(">") + 1:])
            continue
        name, attrs = token["name"], token["data"]
        if name not in ("a", "area") and not name.startswith("v:"):
            continue
        if "href" not in attrs or "data-smtpd-no-track" in attrs:
            continue
        if attrs.get("data-msys-clicktrack", "").strip(URL_STRIP) == "0":
            continue
        url = attrs["href"].strip(URL_STRIP)
        if is_trackable(url):
            found.append(url)
    return found


def scanned(text: str) -> list[str]:
    return [site.url for site in htmlscan.scan(text).links]


def html_views(raw: bytes) -> list[str]:
    """The text of each text/html part (latin-1 for ASCII-compatible charsets, as the
    rewriter views them; decoded otherwise)."""
    views = []
    for part in email.message_from_bytes(raw, policy=compat32).walk():
        if part.get_content_type() != "text/html":
            continue
        payload = part.get_payload(decode=True) or b""
        charset = (part.get_content_charset() or "us-ascii").lower()
        wide = charset.startswith(("utf-16", "utf-32", "iso-2022", "utf-7"))
        try:
            views.append(payload.decode(charset if wide else "latin-1"))
        except (LookupError, UnicodeDecodeError):
            views.append(payload.decode("latin-1"))
    return views


MESSAGES = {path.name: path.read_bytes() for path in sorted(DATA.glob("*.eml"))}
MESSAGES["newsletter"] = newsletter()
MESSAGES.update({os.path.basename(path): Path(path).read_bytes() for path in CORPUS})


@pytest.mark.parametrize("name", list(MESSAGES))
def test_fixtures_and_corpus_read_as_html5lib_reads_them(name):
    views = html_views(MESSAGES[name])
    for view in views:
        assert scanned(view) == reference(view)


def test_the_fixtures_hold_links_to_compare():
    assert sum(len(reference(v)) for raw in MESSAGES.values() for v in html_views(raw)) > 300


URL = "https://a.example/p?q=1"
PIECES = [
    # tags and attributes, whole and cut
    "<a href=\"https://a.example/x\">", "<a href='https://b.example/y?a=1&amp;b=2'>",
    "<a href=https://c.example/z>", "<A HREF=\"https://d.example/\">", "<area href=\"https://e.example/\">",
    "<a", "<a ", " href=", "href=\"", "href='", "\"", "'", "=", ">", "/>", "/", " ", "\n", "\t",
    "</a>", "<a data-msys-clicktrack=\"0\" href=\"https://f.example/\">", "<a data-smtpd-no-track href=",
    "https://g.example/", "x\"y", "<div title=\"", "<img alt='", "<a href=\"mailto:x@y.example\">",
    "<v:roundrect href=\"https://v.example/\">", "</v:roundrect>", "<p>", "<br/>", "<b>",
    # character references
    "&amp;", "&amp", "&copy", "&copy;", "&timestamp=", "&region=1", "&notit;", "&#104;", "&#x68;",
    "&#0;", "&#x80;", "&", "&#", "&#x", "&lt;", "?a=1&times", "&quot;",
    # comments, doctypes, bogus comments, CDATA
    "<!--", "-->", "--!>", "<!-->", "<!--->", "--", "<!", "<!DOCTYPE html>", "<?x>", "</>", "</ x>",
    "<![CDATA[", "]]>", "<!--[if mso]>", "<![endif]-->", "<!--[if !mso]><!-->", "<!--<![endif]-->",
    # raw text and script data
    "<script>", "</script>", "<script", "<!--<script>", "<style>", "</style>", "</style", "<title>",
    "</title>", "<textarea>", "</textarea>", "<xmp>", "</xmp>", "<iframe>", "</iframe>",
    "<noframes>", "</noframes>", "<noembed>", "</noembed>", "<plaintext>",
    "<div>", "</div>",
    # body and text
    "<html>", "<body>", "</body>", "text ", "<", "x",
]


# Inside svg/math, whole units only: the block ends at its own </svg> or </math>. Tree
# construction decides what an end tag or a breakout tag inside foreign content closes;
# the scanner models that roughly (foreign.py) and the unit tests of test_htmlscan.py
# cover it. Here: CDATA, raw text tags that are not raw there, links, comments.
FOREIGN_PIECES = [
    "<g>", "</g>", "<style><a href=\"https://s.example/1\"></style>", "<![CDATA[<a href=\"https://c.example/\">]]>",
    "<![CDATA[ x > ]]>", "<a href=\"https://s.example/2\">", "<textarea><a href='https://s.example/3'></textarea>",
    "<script><a href=https://s.example/4></script>", "<title>t</title>", "<!-- <a href=\"https://n.example/\"> -->",
    "x ", "<svg/>", "<a href=\"https://s.example/5\"/>",
]
BLOCK = st.builds(lambda root, inner: f"<{root}>{''.join(inner)}</{root}>", st.sampled_from(["svg", "math"]),
                  st.lists(st.sampled_from(FOREIGN_PIECES), max_size=12))


OUTER = ["<a href=\"https://o.example/\">", "</a>", "x ", "<!-- c -->", "<style>y</style>", "<br>"]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_generated_documents_read_as_html5lib_reads_them(pieces):
    text = "".join(pieces)
    assert scanned(text) == reference(text)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(OUTER), BLOCK), max_size=12))
def test_generated_svg_and_math_read_as_html5lib_reads_them(pieces):
    text = "".join(pieces)
    assert scanned(text) == reference(text)
