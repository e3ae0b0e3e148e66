"""The /v1/track family on the Flask test client: the same stored links as /c/ and /o/,
signed and unsigned broadcast ``?url=``, referer on clicks, the message status API."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from engage.store import keys
from engage.web.app import GIF
from engage.web.trackapi import BOUND, LEGACY, sign, sign_url, signature_kind
from support import stored

KEY = "k" * 32
AUTH = {"Authorization": "test-key-1-abcdefghijkl"}


def stream(events):
    return stored.events(events.client, events.prefix)


def test_both_url_families_resolve_the_same_stored_links(client, mail, events):
    urls = [f"https://example.com/{n}?q={n}" for n in range(12)]
    message = mail(*urls)
    for index, url in enumerate(urls):
        short = client.get(f"/c/{message.click(index)}")
        v1 = client.get(f"/v1/track/click/{message.click(index)}")
        assert short.status_code == v1.status_code == 302
        assert short.headers["Location"] == v1.headers["Location"] == url
    assert [e["type"] for e in stream(events)] == ["click"] * 24


def test_v1_open_is_the_pixel_and_records_an_open(client, mail, events):
    message = mail()
    response = client.get(f"/v1/track/open/{message.open}")
    assert response.status_code == 200 and response.data == GIF and len(GIF) == 43
    assert response.mimetype == "image/gif"
    assert "no-store" in response.headers["Cache-Control"]
    (event,) = stream(events)
    assert event["type"] == "open" and event["email_id"] == message.open
    assert event["transmission_id"] == message.key
    assert message.record.message_id not in message.open


@pytest.mark.parametrize("email_id", ["nope", "A" * 28, "!" * 28])
def test_v1_open_serves_the_pixel_for_unknown_ids(client, mail, events, email_id):
    mail()
    response = client.get(f"/v1/track/open/{email_id}")
    assert response.status_code == 200 and response.data == GIF
    assert stored.count(events.client, events.prefix) == 0


def test_v1_open_serves_the_pixel_when_redis_is_down(make_app, mail, web_redis):
    message = mail()
    app_client = make_app().test_client()
    web_redis.stop()
    try:
        response = app_client.get(f"/v1/track/open/{message.open}")
        assert response.status_code == 200 and response.data == GIF
    finally:
        web_redis.start()


def test_v1_click_unknown_tracking_id_is_404(client, mail):
    message = mail("https://example.com/")
    assert client.get(f"/v1/track/click/{message.click(1)}").status_code == 404
    assert client.get(f"/v1/track/click/{message.open}").status_code == 404


def test_clicks_record_referer_for_both_families(client, mail, events):
    message = mail("https://example.com/r")
    client.get(f"/c/{message.click(0)}", headers={"Referer": "https://mail.example/inbox"})
    client.get(f"/v1/track/click/{message.click(0)}", headers={"Referer": "https://webmail.example/"})
    referers = [e["referer"] for e in stream(events)]
    assert referers == ["https://mail.example/inbox", "https://webmail.example/"]


@pytest.mark.parametrize("query", [
    "url=https%3A%2F%2Fevil.example%2F",
    "url=https%3A%2F%2Fevil.example%2F&sig=",
    "url=https%3A%2F%2Fevil.example%2F&sig=AAAA",
    "url=",
])
def test_unsigned_or_badly_signed_url_is_400_without_redirect(make_app, mail, events, query):
    message = mail("https://example.com/stored")
    client = make_app(url_signing_key=KEY).test_client()
    response = client.get(f"/v1/track/click/{message.click(0)}?{query}")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert stored.count(events.client, events.prefix) == 0


def test_signed_url_is_followed_and_recorded_as_a_click(make_app, mail, events):
    message = mail("https://example.com/stored")
    client = make_app(url_signing_key=KEY).test_client()
    url = "https://news.example/offer?a=1&b=%C3%A4"
    response = client.get(f"/v1/track/click/{message.open}?url={quote(url, safe='')}"
                          f"&sig={sign(KEY, url, message.open)}",
                          headers={"Referer": "https://m.example/"})
    assert response.status_code == 302 and response.headers["Location"] == url
    (event,) = stream(events)
    assert event["type"] == "click" and event["target_link_url"] == url
    assert event["referer"] == "https://m.example/" and event["transmission_id"] == message.key


def test_a_signature_is_for_one_exact_url(make_app, mail):
    message = mail()
    client = make_app(url_signing_key=KEY).test_client()
    url = "https://news.example/offer"
    other = quote(url + "x", safe="")
    assert client.get(f"/v1/track/click/{message.click(0)}?url={other}"
                      f"&sig={sign(KEY, url, message.click(0))}").status_code == 400
    assert client.get(f"/v1/track/click/{message.click(0)}?url={quote(url, safe='')}"
                      f"&sig={sign('other' + KEY, url, message.click(0))}").status_code == 400


def test_a_signature_is_for_one_message_id(make_app, mail, events):
    """Moved to another message, or to another id of the same message, it is a 400 and
    records nothing."""
    mine, other = mail(), mail()
    client = make_app(url_signing_key=KEY).test_client()
    url = "https://news.example/offer"
    query = f"url={quote(url, safe='')}&sig={sign(KEY, url, mine.open)}"
    for moved in (other.open, other.click(0), mine.click(0), mine.open + "x"):
        response = client.get(f"/v1/track/click/{moved}?{query}")
        assert response.status_code == 400 and "Location" not in response.headers, moved
    assert stream(events) == []
    assert client.get(f"/v1/track/click/{mine.open}?{query}").status_code == 302
    assert [e["transmission_id"] for e in stream(events)] == [mine.key]


def test_url_only_signatures_as_documented_before_still_work_unless_turned_off(
        make_app, mail, events, caplog):
    """The older form (HMAC of the URL alone) redirects and records, and the access log
    says so; with legacy_url_signatures off it is a 400 like any foreign signature."""
    message = mail()
    url = "https://news.example/offer"
    path = f"/v1/track/click/{message.open}?url={quote(url, safe='')}&sig={sign_url(KEY, url)}"
    with caplog.at_level("INFO", logger="engage.access"):
        response = make_app(url_signing_key=KEY).test_client().get(path)
    assert response.status_code == 302 and response.headers["Location"] == url
    assert len(stream(events)) == 1
    assert "event=click-legacy-sig" in caplog.text
    strict = make_app(url_signing_key=KEY, legacy_url_signatures=False).test_client()
    assert strict.get(path).status_code == 400
    bound = f"/v1/track/click/{message.open}?url={quote(url, safe='')}&sig={sign(KEY, url, message.open)}"
    assert strict.get(bound).status_code == 302
    assert len(stream(events)) == 2


def test_signature_kinds():
    url, mid = "https://a.example/x?y=\u00e4", "AbC123_-"
    assert signature_kind(KEY, url, sign(KEY, url, mid), mid, legacy=False) == BOUND
    assert signature_kind(KEY, url, sign(KEY, url, mid) + "=", mid, legacy=False) == BOUND
    assert signature_kind(KEY, url, sign_url(KEY, url), mid, legacy=True) == LEGACY
    assert signature_kind(KEY, url, sign_url(KEY, url), mid, legacy=False) is None
    assert signature_kind(KEY, url, sign(KEY, url, mid), "other", legacy=True) is None
    assert signature_kind("", url, sign("", url, mid), mid, legacy=True) is None
    assert signature_kind(KEY, url, "", mid, legacy=True) is None
    # The pair is unambiguous: an id (a path segment) with a line feed is never valid.
    assert signature_kind(KEY, "https://x.example/", sign(KEY, "b\nhttps://x.example/", "a"),
                          "a\nb", legacy=True) is None


def test_without_a_server_key_broadcast_mode_is_off(client, mail):
    message = mail()
    url = "https://news.example/offer"
    response = client.get(f"/v1/track/click/{message.click(0)}?url={quote(url, safe='')}"
                          f"&sig={sign('', url, message.click(0))}")
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/", "data:text/html,x",
                                 "ftp://example.com/"])
def test_a_signed_url_that_is_not_http_is_still_refused(make_app, mail, url):
    message = mail()
    client = make_app(url_signing_key=KEY).test_client()
    response = client.get(f"/v1/track/click/{message.click(0)}?url={quote(url, safe='')}"
                          f"&sig={sign(KEY, url, message.click(0))}")
    assert response.status_code == 400 and "Location" not in response.headers


def test_message_status_api(client, mail):
    message = mail("https://example.com/a", campaign="autumn", metadata={"user": 9})
    empty = client.get(f"/api/v1/messages/{message.open}", headers=AUTH).get_json()["results"]
    assert empty["opened_at"] is None and empty["clicked_at"] is None
    assert empty["open_count"] == empty["click_count"] == 0
    client.get(f"/v1/track/open/{message.open}")
    client.get(f"/o/{message.open}")
    client.get(f"/i/{message.open}")
    client.get(f"/c/{message.click(0)}")
    result = client.get(f"/api/v1/messages/{message.open}", headers=AUTH).get_json()["results"]
    assert result["email_id"] == message.open
    assert result["campaign_id"] == "autumn" and result["metadata"] == {"user": 9}
    assert result["tags"] == ["news", "vip"] and result["recipients"] == ["Rcpt@Example.COM"]
    assert result["recipient"] == "Rcpt@Example.COM"
    # /v1/track/open and /o are both the bottom pixel: from one network within the
    # repeat window, the second is a repeat (counted, no event).
    assert result["open_count"] == 1 and result["initial_open_count"] == 1
    assert result["repeat_opens"] == 1 and result["click_count"] == 1
    assert result["opened_at"].endswith("Z") and result["clicked_at"] >= result["opened_at"]


def test_message_status_api_needs_a_key_and_a_known_email_id(client, mail):
    message = mail()
    assert client.get(f"/api/v1/messages/{message.open}").status_code == 401
    missing = client.get("/api/v1/messages/" + "A" * 28, headers=AUTH)
    assert missing.status_code == 404 and missing.get_json()["errors"]
    assert client.get(f"/api/v1/messages/{message.click(0)}", headers=AUTH).status_code == 404


def test_first_open_keeps_its_time(client, mail, rclient):
    message = mail()
    client.get(f"/v1/track/open/{message.open}")
    first = rclient.hget(keys.status("engage:", message.key), "opened_at")
    client.get(f"/v1/track/open/{message.open}", environ_base={"REMOTE_ADDR": "192.0.2.80"})
    assert rclient.hget(keys.status("engage:", message.key), "opened_at") == first
    assert rclient.hget(keys.status("engage:", message.key), "open_count") == b"2"
