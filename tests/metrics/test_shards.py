"""Metrics over the 24 shards of layout 2 (engage.store.keys), and layout 1's buckets while
they live: each would fail with a reader of one shard. Counts of messages in different
shards are summed, list routes are the union, layout 1's buckets are counted and kept
(a rebuild keeps them when their stream is gone); the same sums and commands on a Redis Cluster,
where the shards are spread over the masters."""
from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from metrics_recount import (
    ALL,
    event_for,
    hour_start,
    make_traffic,
    nonzero,
    recount,
    register,
    stream_events,
)

from engage.metrics import api as metricsapi
from engage.metrics.rebuild import rebuild
from engage.store import aggregates, keys
from engage.store.events import EventLog
from engage.store.links import LinkStore

KEY = {"Authorization": "test-key-1-abcdefghijkl"}
API = "/api/v1/metrics"
SHARDS = (0, 7, 23)
P = "engage:"


@pytest.fixture
def first_hour() -> int:
    return hour_start(time.time()) - 20 * 3600


def get(client, route: str, first_hour: int, **params):
    query = {"from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first_hour)), **params}
    response = client.get(f"{API}{route}?{urlencode(query)}", headers=KEY)
    assert response.status_code == 200, response.json
    return response.json["results"]


def test_counts_of_messages_in_different_shards_are_summed(client, rclient, events, first_hour):
    store = LinkStore(rclient, P)
    sent = [register(store, "spread", "example.com", first_hour + 60 * n, shard=shard)
            for n, shard in enumerate(SHARDS)]
    for n, message in enumerate(sent):
        events.append(event_for(message, "open", first_hour + 600 + n))
        events.append(event_for(message, "click", first_hour + 700 + n, 0))
    hour = aggregates.hour_of(first_hour)
    for shard in SHARDS:  # each message counted in its own shard's buckets only
        assert rclient.hget(keys.aggregate(P, shard, "s", hour), "s|spread|example.com") == b"1"
        assert rclient.hget(keys.aggregate(P, shard, "e", hour), "c|spread|example.com") == b"1"
    metrics = "count_sent,count_rendered,count_unique_confirmed_opened,count_clicked"
    totals = {"count_sent": 3, "count_rendered": 3, "count_unique_confirmed_opened": 3,
              "count_clicked": 3}
    assert get(client, "/deliverability", first_hour, metrics=metrics) == [totals]
    assert get(client, "/deliverability/campaign", first_hour, metrics=metrics) == [
        {"campaign_id": "spread", **totals}]
    series = get(client, "/deliverability/time-series", first_hour, metrics=metrics,
                 precision="day", timezone="UTC")
    assert sum(row["count_clicked"] for row in series) == 3
    links = get(client, "/deliverability/link-name", first_hour, metrics="count_raw_clicked")
    assert links == [{"link_name": "cta", "count_raw_clicked": 3}]


def test_list_routes_are_the_union_over_shards(client, rclient, first_hour):
    store = LinkStore(rclient, P)
    register(store, "first", "example.com", first_hour, ("a@one.example",), shard=2)
    register(store, "second", "other.example", first_hour, ("b@two.example",), shard=19)
    assert get(client, "/campaigns", first_hour) == {"campaigns": ["first", "second"]}
    assert get(client, "/domains", first_hour) == {"domains": ["one.example", "two.example"]}
    assert get(client, "/sending-domains", first_hour) == {
        "sending-domains": ["example.com", "other.example"]}


def layout1_buckets(client, hour: str) -> None:
    """What layout 1 counted before the upgrade: its untagged buckets."""
    def old(kind: str) -> str:
        return keys.aggregate(P, keys.LAYOUT1, kind, hour)

    assert old("e") == f"{P}agg:e:{hour}"
    client.hset(old("s"), "s|old|example.com", 5)
    client.hset(old("e"), mapping={"r|old|example.com": 7, "ur|old|example.com": 4})
    client.hset(old("l"), "c|old|example.com|cta", 2)
    client.sadd(old("d"), "legacy.example")


def test_layout_1_buckets_are_still_counted(client, rclient, events, first_hour):
    store = LinkStore(rclient, P)
    message = register(store, "old", "example.com", first_hour, ("r@new.example",), shard=4)
    events.append(event_for(message, "open", first_hour + 60))
    layout1_buckets(rclient, aggregates.hour_of(first_hour))
    summary = get(client, "/deliverability", first_hour,
                  metrics="count_sent,count_rendered,count_unique_rendered")
    assert summary == [{"count_sent": 6, "count_rendered": 8, "count_unique_rendered": 5}]
    assert get(client, "/deliverability/link-name", first_hour, metrics="count_clicked") == [
        {"link_name": "cta", "count_clicked": 2}]
    assert get(client, "/domains", first_hour) == {"domains": ["legacy.example", "new.example"]}


def test_a_rebuild_keeps_layout_1_buckets_when_their_stream_is_gone(rclient, events, first_hour):
    store = LinkStore(rclient, P)
    message = register(store, "new", "example.com", first_hour, shard=9)
    events.append(event_for(message, "open", first_hour + 60))
    hour = aggregates.hour_of(first_hour)
    layout1_buckets(rclient, hour)
    old = {kind: rclient.hgetall(keys.aggregate(P, keys.LAYOUT1, kind, hour)) for kind in "el"}
    report = rebuild(rclient, P, first_hour, first_hour + 3600, 400, time.time())
    assert report.shards == 1 and report.events == 1  # the one shard with a stream
    assert {kind: rclient.hgetall(keys.aggregate(P, keys.LAYOUT1, kind, hour))
            for kind in "el"} == old


def test_on_a_redis_cluster_the_shards_spread_and_are_summed(cluster_client, first_hour):
    """An untagged prefix: each shard in its own slot, the slots on three masters."""
    prefix, cluster = "mc:", cluster_client
    now = time.time()
    sent = make_traffic(LinkStore(cluster, prefix), EventLog(cluster, prefix), first_hour,
                        messages=40, seed=8)
    streams = [keys.events(prefix, shard) for shard in keys.shard_ids()]
    assert len({cluster.get_node_from_key(name).name for name in streams
                if cluster.exists(name)}) == 3
    stream = stream_events(cluster, prefix)
    query = metricsapi.parse_metrics_query("campaign", {
        "from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first_hour)),
        "metrics": ",".join(ALL)}, now)

    def rows():
        return {row.pop("campaign_id"): row for row in metricsapi.run(cluster, prefix, query,
                                                                       now, 400)}

    expected = nonzero(recount(stream, sent, first_hour, hour_start(now) + 3600, "campaign_id"))
    assert rows() == expected
    damaged = {keys.aggregate(prefix, keys.shard_of(message.key), "e",
                              aggregates.hour_of(message.injected)) for message in sent}
    for key in filter(cluster.exists, damaged):
        cluster.hset(key, "r|spring|example.com", 999)
    report = rebuild(cluster, prefix, first_hour - 3600, first_hour + 12 * 3600, 400, now)
    assert report.events == len(stream) and rows() == expected
