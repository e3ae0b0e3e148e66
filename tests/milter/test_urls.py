"""Which URLs are trackable, and how URLs are cut out of prose."""
import random
import re

import pytest

from engage_milter import textscan, urls


@pytest.mark.parametrize("url", [
    "http://example.com", "https://example.com/", "HTTPS://EXAMPLE.COM/A?b=1&c=2#frag",
    "https://user:pw@example.com:8443/p;x?q=a%20b", "https://[2001:db8::1]/x",
    "https://xn--bcher-kva.example/", "https://example.com/a(b)c",
])
def test_trackable(url):
    assert urls.is_trackable(url)


@pytest.mark.parametrize("url", [
    "mailto:a@example.com", "tel:+1555", "#top", "/relative", "javascript:alert(1)",
    "ftp://example.com/", "https://", "https://exa mple.com/", "https://example.com/%zz",
    "https://example.com/{{name}}", "https://bücher.example/", "https://example.com/" + "a" * 4100,
    "https://example.com/<x>",
])
def test_not_trackable(url):
    assert not urls.is_trackable(url)


def test_url_of_exactly_4096_bytes_is_trackable():
    url = "https://example.com/" + "a" * (4096 - 20)
    assert len(url) == 4096 and urls.is_trackable(url)


def test_text_urls_lose_sentence_punctuation_and_unbalanced_brackets():
    text = "Go to https://a.example/x. Or (https://b.example/y) or <https://c.example/z?q=1>, https://w.example/a_(b)!"
    assert [s.url for s in textscan.scan(text)] == [
        "https://a.example/x", "https://b.example/y", "https://c.example/z?q=1", "https://w.example/a_(b)",
    ]
    site = textscan.scan(text)[2]
    assert text[site.start:site.end] == "https://c.example/z?q=1"


def test_url_glued_to_non_url_text_is_left_alone():
    text = "Über uns: https://x.example/über-uns and https://x.example/ok\r\n"
    view = text.encode("utf-8").decode("latin-1")  # how the rewriter sees a UTF-8 part
    assert [s.url for s in textscan.scan(view)] == ["https://x.example/ok"]
    assert [s.url for s in textscan.scan("a https://x.example/|b c")] == []


REFERENCE_CHARS = r"A-Za-z0-9\-._~!$&'()*+,;=:@%"
REFERENCE = re.compile(  # the one-pattern check is_trackable replaced (it backtracked)
    r"[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9\-._~!$&'()*+,;=:%]*@)?"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?"
    rf"(?:/[{REFERENCE_CHARS}/]*)?(?:\?[{REFERENCE_CHARS}/?]*)?(?:#[{REFERENCE_CHARS}/?]*)?"
)


def test_trackable_agrees_with_the_plain_pattern_on_random_urls():
    pieces = ["a", "B", "1", ":", "@", "/", "?", "#", "[", "]", "%", "%2", "%41", ".", "-", " ", "\u00fc",
              "=", "&", "(", "::1", "x.example"]
    rnd = random.Random(2)
    for _ in range(50_000):
        url = rnd.choice(["http://", "https://", "HTTP://", "ftp://", "http:/"]) + \
            "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 10)))
        expected = len(url) <= 4096 and url.isascii() and REFERENCE.fullmatch(url) is not None \
            and re.search(r"%(?![0-9A-Fa-f]{2})", url) is None
        assert urls.is_trackable(url) == expected, url


def _trim_reference(candidate: str) -> str:
    url = candidate
    while url:
        last = url[-1]
        if last in urls.TRAILING or (last in urls.CLOSERS and url.count(last) > url.count(urls.CLOSERS[last])):
            url = url[:-1]
        else:
            return url
    return url


def test_trimming_agrees_with_trimming_one_character_at_a_time():
    rnd = random.Random(1)
    for _ in range(50_000):
        text = "".join(rnd.choice("ab()[].,;:!?'\"*/") for _ in range(rnd.randint(0, 14)))
        assert urls.trim_text_url(text) == _trim_reference(text), text


def test_a_url_followed_by_many_brackets_is_trimmed_whole():
    assert urls.trim_text_url("http://a.example/x" + ")." * 200_000) == "http://a.example/x"
    assert urls.trim_text_url("http://a.example/(x" + ")" * 200_000) == "http://a.example/(x)"
