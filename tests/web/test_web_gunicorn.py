"""The redirector under a real gunicorn on loopback, configured by three ENGAGE_* variables."""
from __future__ import annotations

import http.client
import json

import pytest
import redis

from support import stored
from support.procs import Redirector, free_port
from support.webapp import API_KEY


@pytest.fixture(scope="module")
def gunicorn(web_redis, tmp_path_factory):
    """gunicorn 'engage.web.app:create_app()' (etc/engage/gunicorn.conf.py) with only the three
    documented variables set."""
    port = free_port()
    env = {"ENGAGE_REDIS_URL": web_redis.url, "ENGAGE_API_KEYS": API_KEY,
           "ENGAGE_TRACKING_URL": f"http://127.0.0.1:{port}/t"}
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    redirector = Redirector(env, log, port).start()
    try:
        yield port
    finally:
        redirector.stop()


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        return Reply(connection.getresponse())
    finally:
        connection.close()


URL = "HTTPS://xn--bcher-kva.Example:8443/a%20b/%E2%82%AC?x=1&y=%26;z=a+b#frag!"


def test_click_redirect_is_byte_for_byte_over_http(gunicorn, rclient, mail):
    message = mail(URL, "https://example.com/2")
    reply = request(gunicorn, "GET", f"/t/c/{message.click(0)}")
    assert reply.status == 302
    assert reply.headers["Location"] == URL
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["X-Robots-Tag"] == "noindex"
    head = request(gunicorn, "HEAD", f"/t/c/{message.click(1)}")
    assert head.status == 302 and head.headers["Location"] == "https://example.com/2"
    assert stored.count(rclient, "engage:") == 2


def test_unknown_token_is_404_over_http(gunicorn, rclient, mail):
    message = mail("https://example.com/")
    reply = request(gunicorn, "GET", f"/t/c/{message.open}")
    assert reply.status == 404 and reply.headers.get("Location") is None


def test_forwarded_for_is_not_trusted_by_default(gunicorn, rclient, mail):
    message = mail("https://example.com/")
    request(gunicorn, "GET", f"/t/o/{message.open}", {"X-Forwarded-For": "203.0.113.5"})
    [event] = stored.events(rclient, "engage:")
    assert event["ip_address"] == "127.0.0.1"


def test_events_api_over_http(gunicorn, rclient, mail):
    message = mail("https://example.com/")
    request(gunicorn, "GET", f"/t/c/{message.click(0)}")
    stored.settled(rclient, "engage:")  # the event is appended after the 302
    assert request(gunicorn, "GET", "/t/api/v1/events/message").status == 401
    reply = request(gunicorn, "GET", "/t/api/v1/events/message?events=click",
                    {"Authorization": API_KEY})
    body = json.loads(reply.body)
    assert reply.status == 200 and body["total_count"] == 1
    assert body["results"][0]["target_link_url"] == "https://example.com/"


def test_gif_is_served_when_redis_is_stopped(gunicorn, web_redis, mail, rclient):
    message = mail("https://example.com/")
    web_redis.stop()
    try:
        for path in (f"/t/o/{message.open}", f"/t/i/{message.open}", "/t/o/unknown"):
            reply = request(gunicorn, "GET", path)
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "image/gif" and len(reply.body) == 43
        assert request(gunicorn, "GET", "/t/healthz").status == 503
        assert request(gunicorn, "GET", f"/t/c/{message.click(0)}").status == 503
    finally:
        web_redis.start()
    assert request(gunicorn, "GET", "/t/healthz").status == 200
    redis.Redis(port=web_redis.port).flushdb()
