"""The metrics API under a real gunicorn (etc/engage/gunicorn.conf.py) on loopback, below
the tracking URL's path: the same numbers as a recount from the raw stream."""
from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlencode

import pytest
from metrics_recount import ALL, hour_start, make_traffic, nonzero, recount, stream_events

from engage.store.events import EventLog
from engage.store.links import LinkStore
from support.procs import Redirector, free_port
from support.webapp import API_KEY


@pytest.fixture(scope="module")
def gunicorn(web_redis, tmp_path_factory):
    port = free_port()
    env = {"ENGAGE_REDIS_URL": web_redis.url, "ENGAGE_API_KEYS": API_KEY,
           "ENGAGE_TRACKING_URL": f"http://127.0.0.1:{port}/t"}
    redirector = Redirector(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", port).start()
    try:
        yield port
    finally:
        redirector.stop()


def fetch(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_campaign_metrics_over_http(gunicorn, rclient):
    first_hour = hour_start(time.time()) - 20 * 3600
    sent = make_traffic(LinkStore(rclient, "engage:"), EventLog(rclient, "engage:"), first_hour,
                        messages=30, seed=3)
    query = urlencode({"from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first_hour)),
                       "metrics": ",".join(ALL)})
    path = f"/t/api/v1/metrics/deliverability/campaign?{query}"
    assert fetch(gunicorn, path, {})[0] == 401
    status, body = fetch(gunicorn, path, {"Authorization": API_KEY})
    assert status == 200
    expected = recount(stream_events(rclient), sent, first_hour, hour_start(time.time()) + 3600,
                       "campaign_id")
    assert {row.pop("campaign_id"): row for row in body["results"]} == nonzero(expected)
    status, body = fetch(gunicorn, f"/t/api/v1/metrics/deliverability?{query}&precision=5min",
                         {"Authorization": API_KEY})
    assert status == 400 and body["errors"][0]["param"] == "precision"
