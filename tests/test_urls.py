"""Which URLs are trackable, and how URLs are cut out of prose."""
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
