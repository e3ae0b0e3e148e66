"""The metrics API on a real Redis: every metric of every endpoint equals an independent
recount from the raw stream (tests/metrics_recount.py), for whole and partial windows,
filters, time-series boundaries and time zones; auth, 400s, bucket expiry."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from metrics_recount import (
    ALL,
    ENGAGEMENT,
    LINK_METRICS,
    event_for,
    hour_start,
    make_traffic,
    nonzero,
    recount,
    recount_links,
    register,
    stream_events,
)

from engage.metrics import buckets
from engage.store import aggregates, keys
from engage.store.events import EventLog
from engage.store.links import LinkStore

KEY = {"Authorization": "test-key-1-abcdefghijkl"}
API = "/api/v1/metrics/deliverability"
ROUTES = ("", "/campaign", "/sending-domain", "/link-name", "/time-series")
GROUPS = {"/campaign": "campaign_id", "/sending-domain": "sending_domain"}


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(epoch))


def get(client, route: str = "", **params):
    return client.get(f"{API}{route}?{urlencode(params)}", headers=KEY)


def by(rows: list[dict], column: str) -> dict[str, dict[str, int]]:
    return {row[column]: {k: v for k, v in row.items() if k != column} for row in rows}


@pytest.fixture
def first_hour() -> int:
    return hour_start(time.time()) - 20 * 3600


@pytest.fixture
def traffic(rclient, events, first_hour):
    sent = make_traffic(LinkStore(rclient, "engage:"), events, first_hour)
    return sent, stream_events(rclient)


def windows(first_hour: int) -> list[tuple[int, int]]:
    """(from, to) as given to the API: the whole traffic, and cuts inside it (the API
    widens them to whole hours: [floor(from), floor(to) + 1 h))."""
    return [(first_hour - 3600, first_hour + 12 * 3600),
            (first_hour + 2 * 3600 + 59 * 60, first_hour + 4 * 3600),
            (first_hour + 5 * 3600 + 1, first_hour + 6 * 3600 + 3599)]


@pytest.mark.parametrize("chunk,calls", [(buckets.CHUNK_HOURS, buckets.PIPELINE_CALLS),
                                         (5, 7)])
def test_every_metric_of_every_grouping_equals_the_recount(client, traffic, first_hour, chunk,
                                                           calls, monkeypatch):
    """(Also with Redis summing 5 hours per call, 7 calls per round trip: periods, groups
    and shards span calls and round trips.)"""
    monkeypatch.setattr(buckets, "CHUNK_HOURS", chunk)
    monkeypatch.setattr(buckets, "PIPELINE_CALLS", calls)
    sent, stream = traffic
    assert len(stream) > 150 and {e.get("engage", {}).get("verdict") for e in stream} >= {
        None, "human", "scanner", "privacy_proxy", "prefetch"}
    for start, end in windows(first_hour):
        low, high = hour_start(start), hour_start(end) + 3600
        params = {"from": stamp(start), "to": stamp(end), "metrics": ",".join(ALL)}
        summary = get(client, **params).json["results"]
        assert summary == [recount(stream, sent, low, high).get("", dict.fromkeys(ALL, 0))]
        for route, column in GROUPS.items():
            rows = get(client, route, **params).json["results"]
            assert by(rows, column) == nonzero(recount(stream, sent, low, high, column))
        series = get(client, "/time-series", precision="hour", **params).json["results"]
        expected = recount(stream, sent, low, high, "ts")
        assert [row["ts"] for row in series] == [
            datetime.fromtimestamp(hour, timezone.utc).isoformat()
            for hour in range(low, high, 3600)]
        assert nonzero(by(series, "ts")) == nonzero(expected)
        links = get(client, "/link-name", **{**params, "metrics": ",".join(LINK_METRICS)})
        assert by(links.json["results"], "link_name") == nonzero(recount_links(stream, low, high))


def test_filters_and_the_separator_in_names(client, traffic, first_hour):
    sent, stream = traffic
    start, end = first_hour - 3600, first_hour + 12 * 3600
    low, high = hour_start(start), hour_start(end) + 3600
    params = {"from": stamp(start), "to": stamp(end), "metrics": ",".join(ALL)}
    for campaigns in ({"a|b%c"}, {"spring", "summer"}, {"summer"}):
        rows = get(client, "/sending-domain", campaigns=";".join(campaigns), delimiter=";",
                   **{**params, "metrics": ";".join(ALL)}).json["results"]
        assert by(rows, "sending_domain") == nonzero(
            recount(stream, sent, low, high, "sending_domain", campaigns=campaigns))
        links = get(client, "/link-name", campaigns=";".join(campaigns), delimiter=";",
                    **{**params, "metrics": ";".join(LINK_METRICS)}).json["results"]
        assert by(links, "link_name") == nonzero(
            recount_links(stream, low, high, campaigns=campaigns))
    rows = get(client, "/campaign", sending_domains="OTHER.example", **params).json["results"]
    assert by(rows, "campaign_id") == nonzero(
        recount(stream, sent, low, high, "campaign_id", domains={"other.example"}))
    assert "a|b%c" in by(rows, "campaign_id") and "footer|x" in by(links, "link_name")


@pytest.mark.parametrize("chunk", [buckets.CHUNK_HOURS, 7])
def test_time_series_by_day_in_a_time_zone(client, traffic, first_hour, chunk, monkeypatch):
    monkeypatch.setattr(buckets, "CHUNK_HOURS", chunk)
    sent, stream = traffic
    zone = ZoneInfo("America/New_York")
    start, end = first_hour - 2 * 86400, first_hour + 12 * 3600
    series = get(client, "/time-series", precision="day", timezone="America/New_York",
                 metrics=",".join(ALL), **{"from": datetime.fromtimestamp(start, zone).strftime(
                     "%Y-%m-%dT%H:%M"), "to": datetime.fromtimestamp(end, zone).strftime(
                     "%Y-%m-%dT%H:%M")}).json["results"]
    first = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0)
    last = datetime.fromtimestamp(end, zone)
    assert series[0]["ts"] == first.isoformat() and series[0]["ts"].endswith(("-05:00", "-04:00"))
    assert series[-1]["ts"][:10] == last.strftime("%Y-%m-%d")
    low = int(first.timestamp())
    high = int(datetime(last.year, last.month, last.day, tzinfo=zone).timestamp()) + 86400
    expected = recount(stream, sent, low, high, "ts", zone=zone, precision="day")
    assert nonzero(by(series, "ts")) == nonzero(expected)
    assert sum(row["count_sent"] for row in series) == len(sent)


def test_an_hour_bucket_holds_exactly_its_hour(client, rclient, events, first_hour):
    """Events at HH:59:59.999 and (HH+1):00:00.000 fall in neighbouring buckets; a window
    ending at HH:00 includes the hour HH, one starting at HH:59 starts at HH:00."""
    store = LinkStore(rclient, "engage:")
    message = register(store, "edge", "example.com", first_hour + 3600 - 1)
    events.append(event_for(message, "open", first_hour + 3600 - 0.001))
    events.append(event_for(message, "open", first_hour + 3600))
    events.append(event_for(message, "click", first_hour + 7200, 0))
    series = get(client, "/time-series", precision="hour", metrics="count_sent,count_rendered",
                 **{"from": stamp(first_hour), "to": stamp(first_hour + 7200)}).json["results"]
    assert [(row["count_sent"], row["count_rendered"]) for row in series] == [(1, 1), (0, 1), (0, 0)]
    one = get(client, metrics="count_rendered,count_clicked",
              **{"from": stamp(first_hour + 3600 + 59 * 60), "to": stamp(first_hour + 7200)})
    assert one.json["results"] == [{"count_rendered": 1, "count_clicked": 1}]


def test_rows_are_ordered_and_limited(client, traffic, first_hour):
    params = {"from": stamp(first_hour - 3600), "to": stamp(first_hour + 12 * 3600)}
    rows = get(client, "/campaign", metrics="count_sent,count_clicked", order_by="count_clicked",
               **params).json["results"]
    assert [row["count_clicked"] for row in rows] == sorted(
        (row["count_clicked"] for row in rows), reverse=True)
    top = get(client, "/campaign", metrics="count_sent,count_clicked", order_by="count_clicked",
              limit="2", **params).json["results"]
    assert top == rows[:2]
    assert list(rows[0]) == ["campaign_id", "count_sent", "count_clicked"]


def test_count_sent_counts_messages_not_recipients(client, rclient, events, first_hour):
    store = LinkStore(rclient, "engage:")
    three = register(store, "multi", "example.com", first_hour, ("a@x.example", "b@x.example",
                                                                 "c@x.example"))
    register(store, "multi", "example.com", first_hour)
    for kind in ("open", "open", "click"):
        events.append(event_for(three, kind, first_hour + 60, 0))
    result = get(client, "/campaign", metrics="count_sent,count_unique_rendered,count_rendered",
                 **{"from": stamp(first_hour)}).json["results"]
    assert result == [{"campaign_id": "multi", "count_sent": 2, "count_unique_rendered": 1,
                       "count_rendered": 2}]


def test_buckets_expire_retention_days_after_their_hour(rclient, first_hour):
    store = LinkStore(rclient, "engage:", metrics_retention_days=30)
    log = EventLog(rclient, "engage:", metrics_retention_days=30)
    message = register(store, "ttl", "example.com", first_hour + 10)
    log.append(event_for(message, "click", first_hour + 20, 1))
    hour = aggregates.hour_of(first_hour)
    for kind in ("s", "e", "l"):
        expiry = rclient.expiretime(keys.aggregate("engage:", keys.shard_of(message.key), kind, hour))
        assert expiry == first_hour + 30 * 86400, kind
    old = register(store, "ttl", "example.com", int(time.time()) - 31 * 86400)
    assert rclient.keys(f"engage:*agg:s:{aggregates.hour_of(old.injected)}") == []
    assert rclient.hgetall(keys.status("engage:", message.key)).keys() >= {b"hc", b"clicked_at"}


def test_no_aggregates_with_retention_zero(rclient, first_hour):
    store = LinkStore(rclient, "engage:", metrics_retention_days=0)
    log = EventLog(rclient, "engage:", metrics_retention_days=0)
    log.append(event_for(register(store, "off", "example.com", first_hour), "open", first_hour))
    assert rclient.keys("engage:*agg:*") == []


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_wants_the_api_key(client, route):
    for headers in ({}, {"Authorization": "wrong"}):
        response = client.get(f"{API}{route}?from=2024-01-01T00:00&metrics=count_clicked",
                               headers=headers)
        assert response.status_code == 401
        assert response.json["errors"][0]["message"] == "Unauthorized."


@pytest.mark.parametrize("query,param,words", [
    ("metrics=count_sent", "from", "required"),
    ("from=yesterday&metrics=count_sent", "from", "YYYY-MM-DDTHH:MM"),
    ("from=2024-01-02T00:00&to=2024-01-01T00:00&metrics=count_sent", "from", "earlier"),
    ("from=2024-01-01T00:00", "metrics", "required"),
    ("from=2024-01-01T00:00&metrics=count_sent,count_opened", "metrics", "count_opened"),
    ("from=2024-01-01T00:00&metrics=count_bounce", "metrics", "count_bounce"),
    ("from=2024-01-01T00:00&metrics=count_sent&precision=1min", "precision", "hour"),
    ("from=2024-01-01T00:00&metrics=count_sent&precision=year", "precision", "one of"),
    ("from=2024-01-01T00:00&metrics=count_sent&limit=5", "limit", "unsupported"),
    ("from=2024-01-01T00:00&metrics=count_sent&domains=gmail.com", "domains", "unsupported"),
    ("from=2024-01-01T00:00&metrics=count_sent&timezone=Mars/Base", "timezone", "time zone"),
    ("from=2024-01-01T00:00&metrics=count_sent&timezone=Asia/Kolkata", "timezone", "whole"),
])
def test_bad_parameters_answer_400_naming_them(client, query, param, words):
    response = client.get(f"{API}?{query}", headers=KEY)
    assert response.status_code == 400
    error = response.json["errors"][0]
    assert error["param"] == param and words in error["description"]


@pytest.mark.parametrize("route,query,param", [
    ("/campaign", "metrics=count_sent&limit=0", "limit"),
    ("/campaign", "metrics=count_sent&order_by=count_clicked", "order_by"),
    ("/link-name", "metrics=count_sent", "metrics"),
    ("/link-name", "metrics=count_rendered", "metrics"),
    ("/time-series", "metrics=count_sent&precision=15min", "precision"),
    ("/time-series", "metrics=count_sent&order_by=count_sent", "order_by"),
])
def test_bad_parameters_per_route(client, route, query, param):
    response = client.get(f"{API}{route}?from=2024-01-01T00:00&{query}", headers=KEY)
    assert response.status_code == 400 and response.json["errors"][0]["param"] == param


def test_engagement_metrics_are_all_known_to_the_api():
    assert set(ENGAGEMENT) == set(aggregates.ENGAGEMENT)


def test_redis_down_is_a_json_503(make_app, web_redis):
    client = make_app().test_client()
    web_redis.stop()
    try:
        response = get(client, metrics="count_sent", **{"from": "2024-01-01T00:00"})
    finally:
        web_redis.start()
    assert response.status_code == 503 and response.json["errors"][0]["message"] == "unavailable"
