"""Verdicts through the real redirector (gunicorn, 2 workers x 4 threads, real Redis), with
the client address taken from X-Forwarded-For (proxy_hops = 1) so a test can speak as
Microsoft's, Apple's or a person's network. Raw events are kept whatever the verdict,
the redirect and the GIF are always served; ``engage verdicts recompute`` after a rules
change changes what the events API answers and leaves the stream as it was."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from engage.settings import Settings
from engage.verdicts import machines
from engage.verdicts.recompute import recompute
from support import stored as kept
from support.procs import Redirector, free_port
from support.webapp import API_KEY

REPO = Path(__file__).resolve().parents[2]
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
PLACEHOLDER = "# our own rules\n"
GATEWAY_RULE = "[Example gateway]\nverdict = scanner\nevents = click\nua = ^ExampleGateway/\n"


@pytest.fixture(scope="module")
def extra_rules(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "local.conf"
    path.write_text(PLACEHOLDER)
    return path


@pytest.fixture(scope="module")
def env(web_redis, extra_rules, tmp_path_factory):
    empty = tmp_path_factory.mktemp("conf") / "engage.conf"
    empty.write_text("")
    return {"ENGAGE_REDIS_URL": web_redis.url, "ENGAGE_API_KEYS": API_KEY,
            "ENGAGE_PROXY_HOPS": "1", "ENGAGE_CONFIG": str(empty),
            "ENGAGE_VERDICT_EXTRA_RULES": str(extra_rules)}


@pytest.fixture(scope="module")
def gunicorn(env, tmp_path_factory):
    port = free_port()
    redirector = Redirector({**env, "ENGAGE_TRACKING_URL": f"http://127.0.0.1:{port}/t"},
                            tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", port).start()
    try:
        yield port
    finally:
        redirector.stop()


def request(port, method, path, ip, ua=CHROME, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"User-Agent": ua, "X-Forwarded-For": ip,
                                                  **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def stored(rclient):
    return kept.events(rclient, "engage:")


def api(port, rclient):
    kept.settled(rclient, "engage:")  # the clicks' events are appended after their 302
    status, _, body = request(port, "GET", "/t/api/v1/events/message?per_page=100", "127.0.0.1",
                              headers={"Authorization": API_KEY})
    assert status == 200
    return {event["event_id"]: event for event in json.loads(body)["results"]}


def test_a_safe_links_burst_of_head_and_get_within_a_second_is_scanner(gunicorn, rclient, mail):
    message = mail("https://example.com/1", "https://example.com/2", "https://example.com/3")
    for index in range(3):
        for method in ("HEAD", "GET"):
            status, headers, _ = request(gunicorn, method, f"/t/c/{message.click(index)}",
                                         "40.107.22.91")
            assert status == 302 and headers["Location"] == f"https://example.com/{index + 1}"
    events = stored(rclient)
    assert len(events) == 6 and {e["type"] for e in events} == {"click"}
    assert all(e["engage"]["verdict"] == "scanner" for e in events)
    assert all("network 40.107.0.0/16 (Microsoft Safe Links)" in e["engage"]["reasons"]
               for e in events)
    assert sum("HEAD request" in e["engage"]["reasons"] for e in events) == 3
    assert all(e["ip_address"] == "40.107.22.91" and e["user_agent"] == CHROME for e in events)


def test_an_apple_mpp_pixel_fetch_is_privacy_proxy_and_gets_its_gif(gunicorn, rclient, mail):
    message = mail("https://example.com/")
    status, headers, body = request(gunicorn, "GET", f"/t/o/{message.open}", "17.58.63.12",
                                    ua="Mozilla/5.0")
    assert status == 200 and headers["Content-Type"] == "image/gif" and len(body) == 43
    [event] = stored(rclient)
    assert event["type"] == "open" and event["engage"]["verdict"] == "privacy_proxy"
    assert event["engage"]["reasons"] == [
        "user agent matches Apple Mail Privacy Protection",
        "network 17.0.0.0/8 (Apple Mail Privacy Protection)"]


def test_a_person_clicking_later_is_human(gunicorn, rclient, mail):
    message = mail("https://example.com/")
    status, headers, _ = request(gunicorn, "GET", f"/t/c/{message.click(0)}", "198.51.100.23")
    assert status == 302 and headers["Location"] == "https://example.com/"
    [event] = stored(rclient)
    assert event["engage"] == {"verdict": "human", "reasons": []}


def test_a_burst_from_a_plain_address_is_judged_by_links_per_second(gunicorn, rclient, mail, env):
    """Four links at once from an address no rule knows: each click is a scanner when Redis
    had counted three or more links of the message in its second by then; recompute then
    marks the whole second (the first links too). Judged against the stored timestamps, so
    the test holds wherever the second boundaries fall."""
    message = mail(*[f"https://example.com/{n}" for n in range(4)])
    for index in range(4):
        assert request(gunicorn, "GET", f"/t/c/{message.click(index)}", "192.0.2.44")[0] == 302
    # In click order: each event is appended after its 302, so the next click's append
    # (another thread, another worker) may come first.
    events = sorted(stored(rclient), key=lambda event: event["timestamp"])
    seen: dict[str, set[str]] = defaultdict(set)
    for event in events:
        second = event["timestamp"][:19]
        seen[second].add(event["target_link_url"])
        assert event["engage"]["verdict"] == ("scanner" if len(seen[second]) >= 3 else "human")
    settings = Settings(redis_url=env["ENGAGE_REDIS_URL"])
    recompute(rclient, settings, machines.load([machines.shipped_rules()]))
    for event in api(gunicorn, rclient).values():
        burst = len(seen[event["timestamp"][:19]]) >= 3
        assert event["engage"]["verdict"] == ("scanner" if burst else "human")


def test_recompute_after_a_rules_change_changes_the_api_not_the_stream(
        gunicorn, rclient, mail, env, extra_rules):
    message = mail("https://example.com/")
    request(gunicorn, "GET", f"/t/c/{message.click(0)}", "198.51.100.7", ua="ExampleGateway/2.1")
    request(gunicorn, "GET", f"/t/o/{message.open}", "198.51.100.8")
    [click] = [e for e in api(gunicorn, rclient).values() if e["type"] == "click"]
    assert click["engage"]["verdict"] == "human"
    snapshot = kept.entries(rclient, "engage:")
    command = [sys.executable, "-m", "engage.admin.cli", "verdicts", "recompute"]
    run_env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}, **env,
               "PYTHONPATH": f"{REPO / 'redirector'}"}
    try:
        extra_rules.write_text(PLACEHOLDER + GATEWAY_RULE)
        dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True,
                             timeout=60, env=run_env)
        assert dry.returncode == 0, dry.stderr
        assert "would change 1\n  human -> scanner: 1\ndry run: nothing written" in dry.stdout
        assert api(gunicorn, rclient)[click["event_id"]]["engage"]["verdict"] == "human"
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=run_env)
        assert done.returncode == 0 and "changed 1\n  human -> scanner: 1" in done.stdout
        after = api(gunicorn, rclient)
        assert after[click["event_id"]]["engage"] == {
            "verdict": "scanner", "reasons": ["user agent matches Example gateway"],
            "raw_verdict": "human",
            "recomputed_at": after[click["event_id"]]["engage"]["recomputed_at"]}
        assert [e["engage"]["verdict"] for e in after.values() if e["type"] == "open"] == ["human"]
        assert kept.entries(rclient, "engage:") == snapshot
    finally:
        extra_rules.write_text(PLACEHOLDER)
    back = recompute(rclient, replace(Settings(redis_url=env["ENGAGE_REDIS_URL"]),
                                      verdict_extra_rules=(str(extra_rules),)),
                     machines.load([machines.shipped_rules(), str(extra_rules)]))
    assert dict(back.transitions) == {("scanner", "human"): 1}
    assert api(gunicorn, rclient)[click["event_id"]]["engage"] == {"verdict": "human", "reasons": []}
    assert kept.entries(rclient, "engage:") == snapshot
