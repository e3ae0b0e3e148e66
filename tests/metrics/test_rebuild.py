"""Rebuilding aggregates from the raw stream: without overrides it reproduces the live
buckets exactly (also after the stream was trimmed); with verdict overrides the API equals
the recount with the overrides applied, and events appended afterwards still count right;
windows the stream no longer covers are refused; the CLI runs it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from metrics_recount import (
    ALL,
    LINK_METRICS,
    event_for,
    hour_start,
    make_traffic,
    nonzero,
    recount,
    recount_links,
    register,
    shard_of_event,
    stored_totals,
    stream_events,
    with_overrides,
)

from engage.metrics.rebuild import RebuildError, rebuild
from engage.store import aggregates, keys
from engage.store.links import LinkStore

KEY = {"Authorization": "test-key-1-abcdefghijkl"}
API = "/api/v1/metrics/deliverability"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def first_hour() -> int:
    return hour_start(time.time()) - 20 * 3600


@pytest.fixture
def traffic(rclient, events, first_hour):
    sent = make_traffic(LinkStore(rclient, "engage:"), events, first_hour, messages=80, seed=11)
    return sent, stream_events(rclient)


def buckets(client, pattern: str = "engage:*agg:[el]:*") -> dict[bytes, dict[bytes, bytes]]:
    """Every bucket of every shard (and layout 1) matching ``pattern``."""
    return {key: client.hgetall(key) for key in client.keys(pattern)}


def statuses(client) -> dict[bytes, dict[bytes, bytes]]:
    return {key: client.hgetall(key) for key in client.keys("engage:*ms:*")}


def write_overrides(client, stream, overrides) -> None:
    """Each override into the verdicts hash of its event's shard."""
    by_id = {event["event_id"]: event for event in stream}
    for event_id, engage in overrides.items():
        client.hset(keys.verdicts("engage:", shard_of_event(by_id[event_id])), event_id,
                    json.dumps(engage))


def api(client, route: str, start: int, end: int, metrics=ALL, **params):
    query = {"from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(start)),
             "to": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(end - 60)),
             "metrics": ",".join(metrics), **params}
    response = client.get(f"{API}{route}?{urlencode(query)}", headers=KEY)
    assert response.status_code == 200, response.json
    return response.json["results"]


def assert_api_equals_recount(client, stream, sent, low, high):
    assert api(client, "", low, high) == [recount(stream, sent, low, high).get(
        "", dict.fromkeys(ALL, 0))]
    rows = api(client, "/campaign", low, high)
    assert {row.pop("campaign_id"): row for row in rows} == nonzero(
        recount(stream, sent, low, high, "campaign_id"))
    series = api(client, "/time-series", low, high, precision="hour")
    assert nonzero({row.pop("ts"): row for row in series}) == nonzero(
        recount(stream, sent, low, high, "ts"))
    links = api(client, "/link-name", low, high, metrics=LINK_METRICS)
    assert {row.pop("link_name"): row for row in links} == nonzero(
        recount_links(stream, low, high))


def test_without_overrides_a_rebuild_reproduces_the_live_buckets(rclient, traffic, first_hour):
    live, sent_before, flags = buckets(rclient), buckets(rclient, "engage:*agg:s:*"), statuses(rclient)
    assert len(live) > 10 and len({keys.shard_of_key("engage:", key.decode()) for key in live}) > 5
    totals = stored_totals(rclient, kinds="el")
    for key in live:
        rclient.hset(key, "r|spring|example.com", 999)  # damage to be repaired
    report = rebuild(rclient, "engage:", first_hour - 3600, first_hour + 12 * 3600, 400,
                     time.time())
    assert stored_totals(rclient, kinds="el") == totals  # each hour now in one bucket
    assert buckets(rclient) == {}
    assert buckets(rclient, "engage:*agg:s:*") == sent_before  # sent counts are kept
    assert statuses(rclient) == flags and report.flags_fixed == 0
    assert report.hours == 13 and report.events == len(traffic[1]) and report.overrides == 0
    for kind, hour in totals:
        folded = keys.folded("engage:", kind, hour)
        assert rclient.expiretime(folded) == aggregates.expires_at(hour, 400)


def test_overrides_are_applied_and_later_events_still_count_right(
        client, rclient, events, traffic, first_hour):
    sent, stream = traffic
    renders = {}
    for event in stream:
        if event["type"] != "click":
            renders.setdefault(event["transmission_id"], []).append(event)
    human = lambda e: e.get("engage", {}).get("verdict", "human") == "human"  # noqa: E731
    demoted = next(m for m, evs in renders.items() if sum(map(human, evs)) >= 2)
    promoted = next(m for m, evs in renders.items() if evs and not any(map(human, evs)))
    overrides = {e["event_id"]: {"verdict": "scanner", "reasons": ["recomputed"]}
                 for e in renders[demoted] if human(e)}
    overrides[renders[promoted][-1]["event_id"]] = {"verdict": "human", "reasons": []}
    for n, event in enumerate(stream[::5]):  # and a spread of other changes
        overrides.setdefault(event["event_id"], {"verdict": ("human", "prefetch")[n % 2]})
    write_overrides(rclient, stream, overrides)
    low, high = first_hour - 3600, first_hour + 12 * 3600
    report = rebuild(rclient, "engage:", low, high, 400, time.time())
    assert report.overrides == len(overrides) and report.flags_fixed > 0
    assert_api_equals_recount(client, with_overrides(stream, overrides), sent, low, high)

    by_key = {message.key: message for message in sent}
    for key in (demoted, promoted):  # a human open after the rebuild, in a closed hour
        events.append(event_for(by_key[key], "open", first_hour + 11 * 3600 + 1))
        events.append(event_for(by_key[key], "click", first_hour + 11 * 3600 + 2, 1))
    later = with_overrides(stream_events(rclient), overrides)
    assert_api_equals_recount(client, later, sent, low, high)


def test_a_trimmed_stream_rebuilds_only_the_hours_it_still_holds(rclient, traffic, first_hour):
    """Each shard's stream trimmed as its appends do: refused until the first hour every
    stream holds completely, which the refusal names; rebuilt from there."""
    sent, stream = traffic
    cut = next(e for e in stream if e["timestamp"] >= aggregates.hour_of(first_hour + 3 * 3600))
    for shard in keys.shard_ids():
        rclient.xtrim(keys.events("engage:", shard), minid=int(cut["event_id"]) // 1000,
                      approximate=False)
    with pytest.raises(RebuildError, match="retention_days") as refused:
        rebuild(rclient, "engage:", first_hour, first_hour + 12 * 3600, 400, time.time())
    named = re.search(r"raw events before (\S{13}):00Z", str(refused.value)).group(1)
    start = aggregates.hour_start(named)
    assert first_hour + 3 * 3600 < start < first_hour + 12 * 3600
    live = {hour: value for hour, value in stored_totals(rclient, kinds="el").items()
            if aggregates.hour_start(hour[1]) >= start}
    rclient.delete(*(key for key in buckets(rclient)
                     if aggregates.hour_start(key.decode()[-13:]) >= start))
    rebuild(rclient, "engage:", start, first_hour + 12 * 3600, 400, time.time())
    assert {hour: value for hour, value in stored_totals(rclient, kinds="el").items()
            if aggregates.hour_start(hour[1]) >= start} == live


def test_the_current_hour_is_left_to_the_live_counters(rclient, events, first_hour):
    store = LinkStore(rclient, "engage:")
    message = register(store, "now", "example.com", int(time.time()))
    events.append(event_for(message, "open", time.time()))
    current = keys.aggregate("engage:", keys.shard_of(message.key), "e",
                             aggregates.hour_of(time.time()))
    before = rclient.hgetall(current)
    with pytest.raises(RebuildError, match="no whole hour"):
        rebuild(rclient, "engage:", hour_start(time.time()), hour_start(time.time()) + 7200,
                400, time.time())
    assert rclient.hgetall(current) == before != {}


def test_no_events_no_rebuild(rclient, first_hour):
    with pytest.raises(RebuildError, match="no raw events"):
        rebuild(rclient, "engage:", first_hour, first_hour + 3600, 400, time.time())


def run_cli(web_redis, tmp_path, *args):
    config = tmp_path / "engage.conf"
    config.write_text("")
    env = {**os.environ, "ENGAGE_CONFIG": str(config), "ENGAGE_REDIS_URL": web_redis.url,
           "PYTHONPATH": str(REPO / "redirector")}
    return subprocess.run([sys.executable, "-m", "engage.admin.cli", "metrics", "rebuild", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_the_cli(web_redis, rclient, traffic, first_hour, tmp_path):
    live = stored_totals(rclient, kinds="el")
    rclient.delete(*buckets(rclient))
    fmt = "%Y-%m-%dT%H:%M"
    done = run_cli(web_redis, tmp_path, "--from", time.strftime(fmt, time.gmtime(first_hour)),
                   "--to", time.strftime(fmt, time.gmtime(first_hour + 12 * 3600)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rebuilt 12 hours (") and "verdict overrides" in done.stdout
    assert stored_totals(rclient, kinds="el") == live
    bad = run_cli(web_redis, tmp_path, "--from", "yesterday")
    assert bad.returncode == 2 and "YYYY-MM-DDTHH:MM" in bad.stderr
    rclient.delete(*(keys.events("engage:", shard) for shard in keys.shard_ids(layout1=True)))
    refused = run_cli(web_redis, tmp_path, "--from", time.strftime(fmt, time.gmtime(first_hour)))
    assert refused.returncode == 1 and "no raw events" in refused.stderr
