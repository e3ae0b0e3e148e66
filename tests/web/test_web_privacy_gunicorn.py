"""[privacy] and the forget API under a real gunicorn: masked IP addresses and User-Agents
in the stored events, the events API, the access log and the rate limiter's Redis keys;
``POST /api/v1/recipients/forget`` erases a recipient and the links keep redirecting."""
from __future__ import annotations

import json
import re

import pytest

from support import stored as kept
from support.procs import Redirector, free_port, http_get
from support.redisdump import traces
from support.webapp import API_KEY

AGENT = "Secret-Agent/7.1 (X11; Linux)"


def start(web_redis, tmp_path, **env: str) -> Redirector:
    port = free_port()
    base = {"ENGAGE_REDIS_URL": web_redis.url, "ENGAGE_API_KEYS": API_KEY,
            "ENGAGE_TRACKING_URL": f"http://127.0.0.1:{port}"}
    return Redirector({**base, **env}, tmp_path / "gunicorn.log", port).start()


@pytest.mark.parametrize("ip_mode, ua_mode, hops, client, stored", [
    ("truncated", "drop", "0", "127.0.0.2", "127.0.0.0"),
    ("truncated", "keep", "1", "2001:db8:1234:5678::9", "2001:db8:1234::"),
    ("none", "drop", "1", "203.0.113.77", ""),
])
def test_stored_events_the_api_and_the_access_log_hold_only_what_privacy_allows(
        web_redis, rclient, mail, tmp_path, ip_mode, ua_mode, hops, client, stored):
    redirector = start(web_redis, tmp_path, ENGAGE_IP_ADDRESSES=ip_mode,
                       ENGAGE_USER_AGENTS=ua_mode, ENGAGE_PROXY_HOPS=hops)
    try:
        message = mail("https://example.com/landing")
        headers = {"User-Agent": AGENT}
        source = client if hops == "0" else None
        if hops == "1":  # the address a trusted proxy (nginx) saw
            headers["X-Forwarded-For"] = client
        status, reply, _ = http_get(f"{redirector.url}/c/{message.click(0)}", headers, source=source)
        assert (status, reply["Location"]) == (302, "https://example.com/landing")
        assert http_get(f"{redirector.url}/o/{message.open}", headers, source=source)[0] == 200
        agent = AGENT if ua_mode == "keep" else ""

        stored_events = kept.events(rclient, "engage:")
        assert [(e["ip_address"], e["user_agent"]) for e in stored_events] == [(stored, agent)] * 2
        status, _, body = http_get(f"{redirector.url}/api/v1/events/message",
                                   {"Authorization": API_KEY})
        results = json.loads(body)["results"]
        assert status == 200 and [(e["ip_address"], e["user_agent"]) for e in results] == [(stored, agent)] * 2

        lines = [line for line in redirector.log_text().splitlines() if "engage.access" in line]
        tracked = [line for line in lines if "event=click" in line or "event=open" in line]
        assert len(tracked) == 2
        for line in tracked:
            assert f"ip={stored or '-'} " in line and f"ua={json.dumps(agent)}" in line
        log = redirector.log_text()
        assert client not in log and (ua_mode == "keep") is (AGENT in log)

        limiter_keys = [key.decode() for key in rclient.keys("engage:rl:*")]
        assert limiter_keys and all(client not in key for key in limiter_keys)
        if ip_mode == "truncated":
            assert all(key.startswith(f"engage:rl:{stored}:") for key in limiter_keys)
        else:  # none: not even the network, a keyed digest of it
            assert all(re.fullmatch(r"engage:rl:[0-9a-f]{20}:\d+", key) for key in limiter_keys)
            assert "203.0.113" not in " ".join(limiter_keys)
    finally:
        redirector.stop()


def test_forget_api_erases_a_recipient_and_the_links_keep_redirecting(
        web_redis, rclient, mail, tmp_path):
    redirector = start(web_redis, tmp_path)
    try:
        jane = mail("https://example.com/a", "https://example.com/u?e=jane%40example.org",
                    rcpt=("Jane@Example.org",), subject="Hi jane@example.org")
        bob = mail("https://example.com/a", rcpt=("bob@example.net",))
        for message in (jane, bob):
            http_get(f"{redirector.url}/c/{message.click(0)}")
            http_get(f"{redirector.url}/o/{message.open}")
        assert traces(rclient, "jane@example.org")
        url = f"{redirector.url}/api/v1/recipients/forget"

        def post(body: bytes, key: str = API_KEY) -> tuple[int, dict]:
            import http.client
            connection = http.client.HTTPConnection("127.0.0.1", redirector.port, timeout=30)
            try:
                connection.request("POST", "/api/v1/recipients/forget", body=body,
                                   headers={"Authorization": key, "Content-Type": "application/json"})
                response = connection.getresponse()
                return response.status, json.loads(response.read())
            finally:
                connection.close()

        assert post(b'{"recipient": "jane@example.org"}', key="wrong")[0] == 401
        status, answer = post(b'{"recipient": "jane"}')
        assert status == 400 and answer["errors"][0]["param"] == "recipient"
        assert http_get(url, {"Authorization": API_KEY})[0] == 405
        assert traces(rclient, "jane@example.org")  # nothing done by refused calls

        status, answer = post(b'{"recipient": "JANE@example.ORG"}')
        assert status == 200, answer
        results = answer["results"]
        assert results["changed"] is True
        # Her events refer to her message (engage.store.eventforms): they stay, and now
        # name no one; read back whole, none mentions her.
        assert (results["events"], results["messages"], results["templates"]) == (0, 1, 1)
        assert traces(rclient, "jane@example.org") == []
        assert kept.count(rclient, "engage:") == 4
        whole = json.dumps(kept.events(rclient, "engage:")).lower()
        assert "jane" not in whole and whole.count("bob@example.net") == 4
        for index, want in enumerate(["https://example.com/a", "https://example.com/u?e="]):
            status, headers, _ = http_get(f"{redirector.url}/c/{jane.click(index)}")
            assert (status, headers["Location"]) == (302, want)
        status, answer = post(b'{"recipient": "jane@example.org"}')
        assert status == 200 and answer["results"]["changed"] is False
        assert "jane" not in redirector.log_text().lower()
    finally:
        redirector.stop()
