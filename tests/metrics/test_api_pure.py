"""The metrics API's pure parts: parameters, rounding of from/to to whole periods, period
labels, summing buckets; the aggregate field layout; the [metrics] setting."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from engage import settings
from engage.metrics.api import parse_metrics_query, summarize
from engage.metrics.periods import period_label, period_start
from engage.query import BadParameter
from engage.store import aggregates

NOW = datetime(2024, 5, 20, 12, 34, tzinfo=timezone.utc).timestamp()
NY = ZoneInfo("America/New_York")


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def parse(group: str = "", **args: str):
    args.setdefault("metrics", "count_sent")
    return parse_metrics_query(group, args, NOW)


@pytest.mark.parametrize("precision,start,end", [
    ("hour", "2024-05-03T04:00", "2024-05-03T07:00"),
    ("12hr", "2024-05-03T00:00", "2024-05-03T12:00"),
    ("day", "2024-05-03T00:00", "2024-05-04T00:00"),
    ("week", "2024-04-29T00:00", "2024-05-06T00:00"),  # ISO weeks start on Monday
    ("month", "2024-05-01T00:00", "2024-06-01T00:00"),
])
def test_from_and_to_widen_to_whole_periods(precision, start, end):
    """SparkPost's table: 4:22 to 6:37 at hour precision is 04:00:00 - 06:59:59."""
    query = parse("time-series", **{"from": "2024-05-03T04:22", "to": "2024-05-03T06:37"},
                  precision=precision)
    assert (query.start, query.end) == (utc(start), utc(end))


def test_defaults():
    query = parse(**{"from": "2024-05-20T01:00"})
    assert query.end == utc("2024-05-20T13:00")  # to = now, its hour included
    assert query.precision == "hour" and query.zone is timezone.utc
    assert query.campaigns is None and query.limit == 1000
    assert parse("time-series", **{"from": "2024-05-18T12:34"}).precision == "hour"
    assert parse("time-series", **{"from": "2024-05-18T12:33"}).precision == "day"


def test_a_time_zone_reads_from_and_to_as_local_and_labels_periods_with_its_offset():
    query = parse("time-series", **{"from": "2024-03-09T22:00", "to": "2024-03-11T01:00"},
                  timezone="America/New_York", precision="day")
    assert query.start == utc("2024-03-09T05:00")  # EST midnight
    assert query.end == utc("2024-03-12T04:00")  # EDT midnight after the 11th
    assert period_label(utc("2024-03-10T04:59"), "day", NY) == "2024-03-09T00:00:00-05:00"
    assert period_label(utc("2024-03-10T05:00"), "day", NY) == "2024-03-10T00:00:00-05:00"
    assert period_label(utc("2024-03-11T03:00"), "day", NY) == "2024-03-10T00:00:00-05:00"
    assert period_label(utc("2024-03-11T04:00"), "day", NY) == "2024-03-11T00:00:00-04:00"
    assert period_label(utc("2024-03-11T04:00"), "hour", NY) == "2024-03-11T00:00:00-04:00"
    assert parse(**{"from": "2024-05-01T00:00Z", "to": "2024-05-01T03:00+02:00"}).end == \
        utc("2024-05-01T02:00")


def test_month_and_week_periods_cross_years():
    assert period_start(utc("2024-12-31T23:00"), "month", timezone.utc, after=True) == \
        utc("2025-01-01T00:00")
    assert period_label(utc("2025-01-01T05:00"), "week", timezone.utc) == \
        "2024-12-30T00:00:00+00:00"


def test_lists_metrics_and_their_order():
    query = parse("campaign", **{"from": "2024-05-01T00:00"},
                  metrics="count_clicked; count_sent;count_clicked", delimiter=";",
                  campaigns="a,b;c", sending_domains="Mail.Example.COM", order_by="count_sent",
                  limit="5")
    assert query.metrics == ("count_clicked", "count_sent")
    assert query.campaigns == {"a,b", "c"} and query.sending_domains == {"mail.example.com"}
    assert query.order_by == "count_sent" and query.limit == 5
    assert parse("link-name", **{"from": "2024-05-01T00:00"},
                 metrics="count_raw_clicked").metrics == ("count_raw_clicked",)


@pytest.mark.parametrize("group,args,param", [
    ("", {}, "from"),
    ("", {"from": "2024-05-01"}, "metrics"),  # metrics missing (set to "" below)
    ("", {"from": "2024-13-01T00:00"}, "from"),
    ("", {"from": "2024-05-01T00:00", "to": "soon"}, "to"),
    ("", {"from": "2013-05-01T00:00"}, "from"),  # more than MAX_DAYS
    ("", {"from": "2024-05-01T00:00", "delimiter": "ab"}, "delimiter"),
    ("", {"from": "2024-05-01T00:00", "campaigns": ",,"}, "campaigns"),
    ("", {"from": "2024-05-01T00:00", "precision": "5min"}, "precision"),
    ("", {"from": "2024-05-01T00:00", "query_filters": "{}"}, "query_filters"),
    ("time-series", {"from": "2024-05-01T00:00", "limit": "3"}, "limit"),
    ("time-series", {"from": "2023-01-01T00:00", "precision": "hour"}, "precision"),
    ("campaign", {"from": "2024-05-01T00:00", "limit": "10001"}, "limit"),
    ("campaign", {"from": "2024-05-01T00:00", "limit": "-1"}, "limit"),
    ("", {"from": "2024-05-01T00:00", "timezone": "Australia/Adelaide"}, "timezone"),
])
def test_bad_parameters_are_named(group, args, param):
    args = dict(args)
    args["metrics"] = "" if param == "metrics" else "count_sent"
    with pytest.raises(BadParameter) as info:
        parse_metrics_query(group, args, NOW)
    assert info.value.param == param


@pytest.mark.parametrize("group,metric,words", [
    ("", "count_opened", "unknown metric: 'count_opened'"),
    ("", "count_delivered", "no deliveries"),
    ("", "count_raw_clicked", "not on this endpoint"),
    ("link-name", "count_unique_rendered", "not on this endpoint"),
])
def test_metric_errors_name_the_metric(group, metric, words):
    with pytest.raises(BadParameter) as info:
        parse(group, **{"from": "2024-05-01T00:00"}, metrics=metric)
    assert info.value.param == "metrics" and words in info.value.description


def field(code: str, campaign: str, domain: str, link: str | None = None) -> bytes:
    text = code + aggregates.dims(campaign, domain)
    return (text if link is None else f"{text}|{aggregates.escape(link)}").encode()


def test_summarize_groups_filters_and_keeps_empty_periods():
    buckets = [("", {field("c", "x|y", "a.example"): 3, field("uc", "x|y", "a.example"): 2,
                     field("c", "z", "b.example"): 1}),
               ("", {field("s", "x|y", "a.example"): 5})]
    query = parse("campaign", **{"from": "2024-05-20T09:00"},
                  metrics="count_sent,count_clicked,count_unique_clicked")
    assert summarize(query, buckets) == [
        {"campaign_id": "x|y", "count_sent": 5, "count_clicked": 3, "count_unique_clicked": 2},
        {"campaign_id": "z", "count_sent": 0, "count_clicked": 1, "count_unique_clicked": 0}]
    series = parse("time-series", **{"from": "2024-05-20T09:00", "to": "2024-05-20T11:00"},
                   metrics="count_clicked", sending_domains="b.example")
    buckets = [("2024-05-20T10:00:00+00:00", fields) for _, fields in buckets]
    assert summarize(series, buckets) == [
        {"ts": "2024-05-20T09:00:00+00:00", "count_clicked": 0},
        {"ts": "2024-05-20T10:00:00+00:00", "count_clicked": 1},
        {"ts": "2024-05-20T11:00:00+00:00", "count_clicked": 0}]
    assert summarize(parse(**{"from": "2024-05-20T09:00"}, metrics="count_rendered"), []) == [
        {"count_rendered": 0}]


def test_fields_survive_any_campaign_domain_and_link_text():
    for text in ("a|b", "%7C", "100%", "|", "", "é|%|"):
        raw = field("c", text, text + ".example", text)
        assert aggregates.split_field(raw.decode()) == ["c", text, text + ".example", text]


def test_verdicts_the_contract_counts_as_human():
    assert aggregates.is_human({}) and aggregates.is_human({"engage": {"verdict": "human"}})
    assert aggregates.is_human({"engage": {"reasons": []}})
    for verdict in ("scanner", "privacy_proxy", "prefetch"):
        assert not aggregates.is_human({"engage": {"verdict": verdict}})


def test_the_retention_setting(tmp_path):
    assert settings.Settings().metrics_retention_days == aggregates.DEFAULT_RETENTION_DAYS
    conf = tmp_path / "e.conf"
    conf.write_text("[metrics]\nretention_days = 90\n")
    assert settings.load(str(conf), environ={}).metrics_retention_days == 90
    assert settings.load(str(conf), environ={"ENGAGE_METRICS_RETENTION_DAYS": "0"}
                         ).metrics_retention_days == 0
    conf.write_text("[metrics]\nretention_days = 5000\n")
    with pytest.raises(settings.SettingsError, match=r"\[metrics\] retention_days: must be"):
        settings.load(str(conf), environ={})
