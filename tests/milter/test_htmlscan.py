"""htmlscan reads HTML as an HTML5 tokenizer does, attribute values as a browser decodes
them, and in time linear in the text whatever the text holds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engage.settings import Settings
from engage_milter import charrefs, htmlscan
from engage_milter.plan import Envelope, plan_message
from oracle import assert_only_tracking_changed, milter_view

ROOT = Path(__file__).resolve().parents[2]
TRACKING = "https://t.example"
URL = "https://a.example/x"


def urls(text: str) -> list[str]:
    return [site.url for site in htmlscan.scan(text).links]


# ------------------------------------------------------------------ attribute values
@pytest.mark.parametrize("query", ["timestamp=5", "region=eu", "notify=1", "copy=2", "section=3",
                                   "current=4", "amp=2", "ampx=1"])
def test_a_legacy_entity_before_an_alphanumeric_or_equals_stays_literal(query):
    href = f"https://a.example/x?a=1&{query}"
    assert urls(f'<a href="{href}">x</a>') == [href]
    assert urls(f"<a href='{href}'>x</a> <a href={href}>y</a>") == [href, href]


@pytest.mark.parametrize("written, read", [
    ("https://a.example/?a=1&amp;b=2", "https://a.example/?a=1&b=2"),
    ("https://a.example/?a=1&AMP;b=2", "https://a.example/?a=1&b=2"),
    ("&#104;ttps://a.example/", "https://a.example/"),
    ("&#x68;ttps://a.example/", "https://a.example/"),
    ("&#X68ttps://a.example/", "https://a.example/"),  # a numeric reference needs no ';'
    ("https://a.example/?c=&copy;", "https://a.example/?c=\u00a9"),
    ("https://a.example/?c=&copy", "https://a.example/?c=\u00a9"),  # at the end: decoded
    ("https://a.example/?c=&copy&d", "https://a.example/?c=\u00a9&d"),
    ("https://a.example/&#;", "https://a.example/&#;"),
    ("https://a.example/&#x;", "https://a.example/&#x;"),
    ("https://a.example/&bogus;", "https://a.example/&bogus;"),
    ("https://a.example/&#0;", "https://a.example/\ufffd"),
    ("https://a.example/&#x80;", "https://a.example/\u20ac"),  # windows-1252
    ("https://a.example/&#x81;", "https://a.example/\x81"),
    ("https://a.example/&#xD800;", "https://a.example/\ufffd"),
    ("https://a.example/&#x110000;", "https://a.example/\ufffd"),
    ("https://a.example/&#" + "9" * 5000 + ";", "https://a.example/\ufffd"),
    ("https://a.example/&#x0000000041;", "https://a.example/A"),
    ("https://a.example/\x00", "https://a.example/\ufffd"),
])
def test_attribute_references_decode_as_in_html5(written, read):
    assert charrefs.unescape_attribute(written) == read


@pytest.mark.parametrize("query", ["timestamp=5", "region=eu", "notify=1", "copy=2", "section=3", "current=4"])
def test_such_links_are_tracked_and_stored_as_written(query):
    href = f"https://a.example/x?a=1&{query}"
    raw = (b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n"
           b'<html><body><a href="' + href.encode() + b'">x</a></body></html>\r\n')
    plan = plan_message(*milter_view(raw), Envelope(), Settings(tracking_url=TRACKING), "K" * 22)
    assert [link.url for link in plan.template.links] == [href]
    rewritten = raw.replace(raw.split(b"\r\n\r\n", 1)[1], plan.body)
    assert_only_tracking_changed(raw, rewritten, TRACKING, [href])


def test_url_is_trimmed_of_c0_and_space_only():
    assert urls(f'<a href=" \t{URL}\n">x</a>') == [URL]
    assert urls(f'<a href="\u00a0{URL}">x</a>') == []  # a browser reads that as a relative URL


# ------------------------------------------------------------------ the tokenizer
@pytest.mark.parametrize("html, found", [
    (f'<!-- <a href="{URL}"> -->', []),
    (f'<!--> <a href="{URL}">', [URL]),  # an empty comment
    (f'<!---> <a href="{URL}">', [URL]),
    (f'<!-- x --!> <a href="{URL}">', [URL]),
    (f'<!-- x -- > <a href="{URL}">', []),
    (f'<!-- x <!--> <a href="{URL}">', [URL]),
    (f'<!-- unclosed <a href="{URL}">', []),
    (f'<!DOCTYPE html "><a href=x>"> <a href="{URL}">', [URL]),  # a doctype ends at the first '>'
    (f'<? php > <a href="{URL}">', [URL]),
    (f'</ bogus> <a href="{URL}">', [URL]),
    (f'<![CDATA[ <a href="{URL}"> ]]>', []),  # outside svg: a bogus comment up to '>'
    (f'<![CDATA[ x ]]> <a href="{URL}">', [URL]),
    (f'<svg><![CDATA[ <a href="{URL}"> ]]></svg>', []),
    (f'<svg><![CDATA[ x > ]]><a href="{URL}"></svg>', [URL]),
    (f'<style> <a href="{URL}"> </style> <a href="{URL}/2">', [URL + "/2"]),
    (f'<style> </styles> <a href="{URL}"> </STYLE > <a href="{URL}/2">', [URL + "/2"]),
    (f'<style><a href="{URL}">', []),
    (f'<title><a href="{URL}"></title><a href="{URL}/2">', [URL + "/2"]),
    (f'<textarea><a href="{URL}"></textarea/><a href="{URL}/2">', [URL + "/2"]),
    (f'<xmp><a href="{URL}"></xmp><noembed><a href="{URL}"></noembed><a href="{URL}/2">', [URL + "/2"]),
    (f'<style></style title=">"><a href="{URL}">', [URL]),  # an end tag's attributes hide '>'
    (f'<script>if (a<b) x = "<a href=\'{URL}\'>";</script><a href="{URL}/2">', [URL + "/2"]),
    (f'<script><!-- </script><a href="{URL}">', [URL]),
    (f'<script><!-- <script> </script> <a href="{URL}"> </script><a href="{URL}/2">', [URL + "/2"]),
    (f'<script><!-- <script> --> </script><a href="{URL}">', [URL]),
    (f'<script><!--> </script><a href="{URL}">', [URL]),
    (f'<svg><style><a href="{URL}"></style></svg>', [URL]),  # not raw text in svg
    (f'<svg><p><style><a href="{URL}"></style>', []),  # <p> leaves svg
    (f'<svg><desc><style><a href="{URL}"></style>', []),  # an integration point holds HTML
    (f'<plaintext><a href="{URL}">', []),
    (f'<a href="{URL}"', []),  # open at the end: dropped
    (f'<a href="{URL}" <a href="{URL}/2">', [URL]),  # the second is an attribute of the first
    (f'<div title="<a href=\'{URL}\'>"><a href="{URL}/2">', [URL + "/2"]),
    (f'<a x"y href="{URL}">', [URL]),  # a quote in a name opens nothing
    (f'<a =x href="{URL}">', [URL]),
    (f'<a x=y"z href="{URL}">', [URL]),
    (f'<a href = "{URL}" >', [URL]),
    (f'<a href="{URL}/1" href="{URL}/2">', [URL + "/1"]),  # the first of duplicates wins
    (f'<a\u00a0href="{URL}">', []),  # no-break space is no HTML white space
    (f'<A HREF="{URL}">', [URL]),
    (f'<a/href="{URL}">', [URL]),
    (f'<!--[if mso]><v:roundrect href="{URL}"></v:roundrect><![endif]-->', [URL]),
    (f'<!--[if !mso]><!--><a href="{URL}"><!--<![endif]-->', [URL]),
    (f'<!--[if mso]><a href="{URL}" <![endif]--><a href="{URL}/2">', [URL + "/2"]),
    (f'<!--[if mso]><style><a href="{URL}"><![endif]--><a href="{URL}/2">', [URL + "/2"]),
    ("<a " + "x=1 " * 600 + f'href="{URL}">', [URL]),  # more values than one regex match takes
    ("<a " + "x=1 " * 600 + f'href="{URL}"', []),
    ("<div " + 'x=">" ' * 600 + f'><a href="{URL}">', [URL]),
    ("<div " + "x=1/" * 600 + f'><a href="{URL}">', [URL]),
])
def test_the_tokenizer_reads_as_html5(html, found):
    assert urls(html) == found


def test_pixels_ignore_body_tags_a_browser_does_not_see():
    text = '<!-- <body> --><html><body class="x">hi</body><!-- </body> --></html>'
    scan = htmlscan.scan(text)
    assert text[:scan.top_pixel].endswith('<body class="x">')
    assert text[scan.bottom_pixel:].startswith("</body>hi"[:7])


# ------------------------------------------------------------------ linear time
ADVERSARIAL = {  # name: (body, content type, links that must be found)
    "a without >": ("<a " * 90_000, "text/html", 0),
    "unclosed href": ('<a href="' * 30_000, "text/html", 0),
    "unclosed comments": ("<!--" * 65_000 + f'<a href="{URL}">', "text/html", 0),
    "unclosed script": ("<script" * 40_000, "text/html", 0),
    "script without end": ("<script>" + f'<a href="{URL}">' * 10_000, "text/html", 0),
    "script escapes": ("<script><!--<script>" + "-- " * 90_000, "text/html", 0),
    "style without end": ("<style>" + f'<a href="{URL}">' * 10_000, "text/html", 0),
    "conditional comments": ("<!--[if mso]>" * 20_000, "text/html", 0),
    "cdata in svg": ("<svg>" + "<![CDATA[" * 30_000, "text/html", 0),
    "parentheses after a text URL": ("http://a" + ")" * 260_000, "text/plain", 1),
    "many links on one line": (f'<a href="{URL}">x</a>' * 10_000, "text/html", 10_000),
    "many links, CRLF": (f'<a href="{URL}">x</a>\r\n' * 8_000, "text/html", 8_000),
    "curly escapes and links": ("{{opening_double_curly()}}" + f'<a href="{URL}">x</a>' * 6_000, "text/html", 6_000),
    "deep svg": ("<svg>" + "<g>" * 40_000 + "</x>" * 40_000, "text/html", 0),
}
CHILD = """
import sys
sys.path[:0] = [{milter!r}, {redirector!r}]
from engage.settings import Settings
from engage_milter import htmlscan, textscan
body, ctype = sys.stdin.read(), sys.argv[1]
sites = htmlscan.scan(body).links if ctype == "text/html" else textscan.scan(body)
print(len(sites))
"""


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_bodies_are_scanned_in_linear_time(name):
    """Each body is 250-300 KB; the quadratic scanner took minutes on any of them (37.6 s
    for 64 KiB of '<a '). The scan runs in a child process so that a regression fails
    here at the timeout instead of hanging the suite (a regex holds the GIL and ignores
    signals); the timeout is 20x what the linear scan takes on a loaded 2-core box."""
    body, ctype, links = ADVERSARIAL[name]
    assert len(body) > 200_000
    code = CHILD.format(milter=str(ROOT / "milter"), redirector=str(ROOT / "redirector"))
    done = subprocess.run([sys.executable, "-c", code, ctype], input=body, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == links


def test_many_links_on_one_long_line_are_folded_and_tracked():
    body = (f'<a href="{URL}/a">x</a><a href="{URL}/b">y</a>' * 3_000).encode()
    raw = b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n" + body + b"\r\n"
    plan = plan_message(*milter_view(raw), Envelope(), Settings(tracking_url=TRACKING), "K" * 22)
    assert plan.body is not None and plan.body.count(b"https://t.example/c/") == 6_000
    assert max(map(len, plan.body.split(b"\n"))) <= 998
    rewritten = raw.replace(body + b"\r\n", plan.body)
    assert_only_tracking_changed(raw, rewritten, TRACKING, [link.url for link in plan.template.links])
