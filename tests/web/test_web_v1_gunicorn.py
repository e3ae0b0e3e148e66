"""The /v1/track family under a real gunicorn (2 workers x 4 threads) behind a tracking URL
with a path: many simultaneous first opens leave exactly one ``opened_at``."""
from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from engage.store import keys
from engage.web.app import GIF
from engage.web.trackapi import sign
from support import stored
from support.procs import Redirector, free_port
from support.webapp import API_KEY

SIGNING_KEY = "s" * 40


@pytest.fixture(scope="module")
def v1_gunicorn(web_redis, tmp_path_factory):
    port = free_port()
    env = {"ENGAGE_REDIS_URL": web_redis.url, "ENGAGE_API_KEYS": API_KEY,
           "ENGAGE_TRACKING_URL": f"http://127.0.0.1:{port}/t",
           "ENGAGE_URL_SIGNING_KEY": SIGNING_KEY, "ENGAGE_RATE_LIMIT": "0",
           "ENGAGE_OPEN_REPEAT_WINDOW": "0"}  # 64 first opens, none a repeat
    log = tmp_path_factory.mktemp("gunicorn-v1") / "gunicorn.log"
    redirector = Redirector(env, log, port).start()
    try:
        yield port
    finally:
        redirector.stop()


def get(port, path, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_both_families_under_the_tracking_path(v1_gunicorn, mail, rclient):
    message = mail("https://example.com/one", "https://example.com/two")
    for index, url in enumerate(["https://example.com/one", "https://example.com/two"]):
        for path in (f"/t/c/{message.click(index)}", f"/t/v1/track/click/{message.click(index)}"):
            status, headers, _ = get(v1_gunicorn, path, {"Referer": "https://inbox.example/"})
            assert status == 302 and headers["Location"] == url
    status, headers, body = get(v1_gunicorn, f"/t/v1/track/open/{message.open}")
    assert status == 200 and body == GIF and headers["Content-Type"] == "image/gif"
    events = stored.events(rclient, "engage:")
    # (A click's event is appended after its 302: the open's may be stored before it.)
    assert sorted(e["type"] for e in events) == ["click"] * 4 + ["open"]
    assert {e["referer"] for e in events if e["type"] == "click"} == {"https://inbox.example/"}


def test_broadcast_url_signed_and_unsigned_over_http(v1_gunicorn, mail):
    message = mail()
    url = "https://news.example/a?b=1"
    base = f"/t/v1/track/click/{message.open}?url={quote(url, safe='')}"
    status, headers, _ = get(v1_gunicorn, base)
    assert status == 400 and "Location" not in headers
    status, headers, _ = get(v1_gunicorn, base + "&sig=" + sign("wrong" * 4, url, message.open))
    assert status == 400 and "Location" not in headers
    status, headers, _ = get(v1_gunicorn, base + "&sig=" + sign(SIGNING_KEY, url, message.open))
    assert status == 302 and headers["Location"] == url


def test_simultaneous_first_opens_set_opened_at_once(v1_gunicorn, mail, rclient):
    message = mail()
    count = 64
    paths = [f"/t/v1/track/open/{message.open}" if n % 2 else f"/t/o/{message.open}"
             for n in range(count)]
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda path: get(v1_gunicorn, path), paths))
    assert all(status == 200 and body == GIF for status, _, body in replies)
    status_hash = rclient.hgetall(keys.status("engage:", message.key))
    assert status_hash[b"open_count"] == str(count).encode()
    events = stored.events(rclient, "engage:")
    assert len(events) == count
    # Exactly one winner: opened_at is the timestamp of the first open the store appended.
    assert status_hash[b"opened_at"].decode() == events[0]["timestamp"]
    status, _, body = get(v1_gunicorn, f"/t/api/v1/messages/{message.open}",
                          {"Authorization": API_KEY})
    result = json.loads(body)["results"]
    assert status == 200 and result["opened_at"] == events[0]["timestamp"]
    assert result["open_count"] == count and result["clicked_at"] is None
