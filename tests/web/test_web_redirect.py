"""Click redirects: exact stored destination, 404 for anything the milter did not store."""
from __future__ import annotations

import pytest

from support import stored

URLS = [
    "https://example.com/p?a=1&b=2&c=%26amp%3B",
    "https://example.com/page#section-2",
    "https://example.com/p?q=1#frag?x=y",
    "https://xn--bcher-kva.example/katalog?x=%C3%A4",
    "http://example.com/%E2%82%AC/%20space%2Fslash?e=%3D",
    "HTTPS://Example.COM:8443/Mixed/Case;param=1?Q=+plus+",
    "https://user@example.com/~tilde/(parens)/'quote'/*star*/!bang?$=,",
    "http://[2001:db8::1]:8080/ipv6",
    "https://example.com/?utm_source=x&utm_medium=y&utm_campaign=z%20z&empty=&flag",
    "https://example.com/" + "a" * 4000,
]


@pytest.mark.parametrize("url", URLS)
def test_click_redirects_to_the_exact_stored_url(client, mail, url):
    message = mail(url)
    response = client.get(f"/c/{message.click(0)}")
    assert response.status_code == 302
    assert response.headers["Location"] == url
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Robots-Tag"] == "noindex"


def test_each_link_of_a_message_has_its_own_token(client, mail):
    urls = [f"https://example.com/{n}" for n in range(40)]
    message = mail(*urls)
    for index, url in enumerate(urls):
        assert client.get(f"/c/{message.click(index)}").headers["Location"] == url


def test_head_redirects_and_records_a_click(client, mail, events):
    message = mail("https://example.com/head")
    response = client.head(f"/c/{message.click(0)}")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.com/head"
    assert stored.count(events.client, events.prefix) == 1


@pytest.mark.parametrize("token", [
    "short", "A" * 28, "A" * 28 + "0", "!" * 30, "A" * 28 + "zzzzz", "%2e%2e",
])
def test_malformed_or_unknown_tokens_are_404_pages(client, mail, token):
    mail("https://example.com/")
    response = client.get(f"/c/{token}")
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert b"<html" in response.data and len(response.data) < 1000


def test_forged_tokens_never_redirect(client, mail):
    first, second = mail("https://a.example/"), mail("https://b.example/x", "https://b.example/y")
    forged = [
        first.key + second.template.template_id + "0",  # message of one, template of another
        first.click(1),  # index past the message's links
        first.open,  # an open token is not a click
        first.click(0)[:-1] + "z",
        first.click(0)[:5] + ("B" if first.click(0)[5] != "B" else "C") + first.click(0)[6:],
    ]
    for token in forged:
        response = client.get(f"/c/{token}")
        assert response.status_code == 404, token
        assert "Location" not in response.headers


def test_a_stored_non_http_url_is_never_a_redirect(client, mail):
    message = mail("javascript:alert(1)", "ftp://example.com/file", "//evil.example/")
    for index in range(3):
        assert client.get(f"/c/{message.click(index)}").status_code == 404


def test_unknown_routes_and_methods_are_not_redirects(client, mail):
    message = mail("https://example.com/")
    assert client.get("/c/").status_code == 404
    assert client.post(f"/c/{message.click(0)}").status_code == 405
    assert client.get(f"/x/{message.click(0)}").status_code == 404


def test_routes_live_under_the_tracking_url_path(make_app, mail):
    app = make_app(tracking_url="https://click.example.com/t")
    message = mail("https://example.com/under-t")
    client = app.test_client()
    assert client.get(f"/t/c/{message.click(0)}").headers["Location"] == "https://example.com/under-t"
    assert client.get(f"/c/{message.click(0)}").status_code == 404
    assert client.get(f"/t/o/{message.open}").mimetype == "image/gif"
    assert client.get("/t/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_one_redirector_serves_every_tracking_domain(make_app, mail):
    app = make_app(tracking_url="https://click.example.com/t", tracking_domains={
        "brand.example": "https://links.brand.example", "other.example": "https://o.example/x/"})
    message = mail("https://example.com/any-domain")
    client = app.test_client()
    for path in ("/t", "", "/x"):
        for host in ("click.example.com", "links.brand.example", "o.example", "unknown.test"):
            response = client.get(f"{path}/c/{message.click(0)}", headers={"Host": host})
            assert response.headers["Location"] == "https://example.com/any-domain"


def test_click_event_carries_the_link_and_the_request(client, mail, events):
    message = mail("https://example.com/buy?x=1&y=2", names=("Buy now",), subject="Sale")
    client.get(f"/c/{message.click(0)}", headers={
        "User-Agent": "Mozilla/5.0 Test", "Accept-Language": "de-DE,de;q=0.9"})
    [event] = stored.events(events.client, events.prefix)
    assert event["type"] == "click"
    assert event["target_link_url"] == "https://example.com/buy?x=1&y=2"
    assert event["target_link_name"] == "Buy now"
    assert event["user_agent"] == "Mozilla/5.0 Test"
    assert event["accept_language"] == "de-DE,de;q=0.9"
    assert event["ip_address"] == "127.0.0.1"
    assert event["rcpt_to"] == "rcpt@example.com" and event["raw_rcpt_to"] == "Rcpt@Example.COM"
    assert event["campaign_id"] == "spring" and event["subject"] == "Sale"
    assert event["rcpt_meta"] == {"user": 7} and event["rcpt_tags"] == ["news", "vip"]
    assert event["friendly_from"] == "news@example.com"
    assert event["message_id"] == message.record.message_id
    assert event["injection_time"] == "2023-11-14T22:13:20.000Z"
    assert "geo_ip" not in event


def test_a_multi_recipient_message_has_no_single_rcpt_to(client, mail, events):
    message = mail("https://example.com/", rcpt=("A@x.example", "b@Y.example"))
    client.get(f"/c/{message.click(0)}")
    [event] = stored.events(events.client, events.prefix)
    assert "rcpt_to" not in event and "raw_rcpt_to" not in event
    assert event["rcpt_to_list"] == ["a@x.example", "b@y.example"]


def test_click_still_redirects_when_the_event_cannot_be_stored(client, mail, events, monkeypatch):
    from engage.store.events import EventError, EventLog

    def fail(self, event, now=None, gate=None, resolved=None):
        raise EventError("stream full")
    monkeypatch.setattr(EventLog, "append", fail)
    message = mail("https://example.com/lost-event")
    response = client.get(f"/c/{message.click(0)}")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.com/lost-event"


def test_a_stored_url_with_raw_non_ascii_is_percent_encoded_not_dropped(client, mail):
    # The milter stores RFC 3986 URLs only; should another writer store raw UTF-8 or a
    # space, the Location header still cannot carry it, so those bytes are encoded.
    message = mail("https://example.com/caf\u00e9 menu?q=\u20ac")
    response = client.get(f"/c/{message.click(0)}")
    assert response.headers["Location"] == "https://example.com/caf%C3%A9%20menu?q=%E2%82%AC"
