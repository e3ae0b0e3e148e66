"""The metrics API: SparkPost's ``GET /api/v1/metrics/deliverability[/...]`` over the hourly
aggregates (engage.store.aggregates).

``parse_metrics_query`` is pure: request arguments -> MetricsQuery, or BadParameter naming
the parameter. ``run`` reads every bucket in range, folded hours and every shard's and
layout 1's buckets (engage.metrics.buckets, engage.metrics.fold) and sums it into
SparkPost's shapes: ``{"results": [{...}]}`` with one object (summary), one per
campaign_id / sending_domain / link_name, or one per period with ``ts`` (time-series).
Hour is the finest precision (buckets are hourly); from/to widen to whole periods.
Periods are engage.metrics.periods'; the list routes are engage.metrics.lists.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import redis

from engage.metrics.buckets import sum_hours
from engage.metrics.periods import hour_names, hours, period_label, period_start
from engage.query import MISSING, BadParameter, parse_delimiter, parse_list, parse_time, parse_zone
from engage.store import aggregates

# Route tail -> the key each result is grouped by ("" = one summary object).
GROUPS = {"": "", "campaign": "campaign_id", "sending-domain": "sending_domain",
          "link-name": "link_name", "time-series": "ts"}
COMMON = frozenset(("from", "to", "delimiter", "timezone", "metrics", "campaigns",
                    "sending_domains", "precision"))
RANKED = COMMON | {"limit", "order_by"}
PRECISIONS = ("hour", "12hr", "day", "week", "month")
SUB_HOUR = ("1min", "5min", "15min")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1000
MAX_DAYS = 3700
TIME_FORM = "YYYY-MM-DDTHH:MM, e.g. 2024-05-01T08:00"  # as SparkPost documents it
MAX_HOURS = 10_000  # periods of an hourly time-series (416 days)
HOUR = aggregates.HOUR
# SparkPost metrics that need delivery data engage never sees (it sits before the MTA).
NOT_KEPT = frozenset((
    "count_targeted", "count_injected", "count_accepted", "count_delivered",
    "count_delivered_first", "count_delivered_subsequent", "count_bounce",
    "count_hard_bounce", "count_soft_bounce", "count_block_bounce", "count_admin_bounce",
    "count_undetermined_bounce", "count_rejected", "count_policy_rejection",
    "count_generation_failed", "count_generation_rejection", "count_inband_bounce",
    "count_outofband_bounce", "count_delayed", "count_delayed_first", "total_msg_volume",
    "count_spam_complaint", "total_delivery_time_first", "total_delivery_time_subsequent",
    "count_unsubscribe", "count_unique_clicked_approx", "count_unique_confirmed_opened_approx",
    "count_raw_clicked_approx"))

ALL_METRICS = frozenset(aggregates.SENT) | frozenset(aggregates.ENGAGEMENT) | frozenset(
    aggregates.LINKS)


@dataclass(frozen=True)
class MetricsQuery:
    group: str  # a GROUPS key
    start: int  # unix time, whole hour, inclusive
    end: int  # unix time, whole hour, exclusive
    metrics: tuple[str, ...]
    precision: str
    zone: tzinfo
    campaigns: frozenset[str] | None = None
    sending_domains: frozenset[str] | None = None
    limit: int = DEFAULT_LIMIT
    order_by: str = ""


def known_metrics(group: str) -> Mapping[str, str]:
    """Metric name -> field code for one endpoint."""
    if group == "link-name":
        return aggregates.LINKS
    return {**aggregates.SENT, **aggregates.ENGAGEMENT}


def parse_metrics_query(group: str, args: Mapping[str, str], now: float) -> MetricsQuery:
    """Validate every parameter; the first bad one raises BadParameter."""
    allowed = RANKED if GROUPS[group] not in ("", "ts") else COMMON
    for name in args:
        if name not in allowed:
            raise BadParameter(name, "unsupported parameter")
    delimiter = parse_delimiter(args)
    zone = parse_zone(args.get("timezone", "UTC"))
    if "from" not in args:
        raise BadParameter("from", "required, as YYYY-MM-DDTHH:MM", MISSING)
    start_at = parse_time(args["from"], "from", zone, TIME_FORM)
    end_at = parse_time(args["to"], "to", zone, TIME_FORM) if "to" in args else now
    if start_at >= end_at:
        raise BadParameter("from", "must be earlier than to")
    if end_at - start_at > MAX_DAYS * 86400:
        raise BadParameter("from", f"the window may span at most {MAX_DAYS} days")
    precision = _parse_precision(args, group, end_at - start_at)
    if group == "time-series" and precision == "hour" and end_at - start_at > MAX_HOURS * HOUR:
        raise BadParameter("precision", f"at most {MAX_HOURS} hours per series: use 12hr, "
                           "day, week or month for this window")
    for moment in (start_at, end_at):
        _whole_hour_offset(zone, moment)
    metrics = _parse_metrics(args, group, delimiter)
    lists = {name: parse_list(args[name], name, delimiter)
             for name in ("campaigns", "sending_domains") if name in args}
    domains = lists.get("sending_domains")
    return MetricsQuery(
        group, period_start(start_at, precision, zone),
        period_start(end_at, precision, zone, after=True), metrics, precision, zone,
        lists.get("campaigns"), frozenset(d.lower() for d in domains) if domains else None,
        parse_limit(args), _parse_order_by(args, metrics))


def _whole_hour_offset(zone: tzinfo, moment: float) -> None:
    offset = datetime.fromtimestamp(moment, zone).utcoffset() or timedelta(0)
    if offset.total_seconds() % HOUR:
        raise BadParameter("timezone", "its UTC offset is not a whole number of hours; "
                           "aggregates are kept per UTC hour")


def _parse_precision(args: Mapping[str, str], group: str, span: float) -> str:
    default = "hour" if group != "time-series" or span <= 2 * 86400 else "day"
    precision = args.get("precision", default).strip().lower()
    if precision in SUB_HOUR:
        raise BadParameter("precision", "the finest precision is hour (aggregates are kept "
                           "per hour)")
    if precision not in PRECISIONS:
        raise BadParameter("precision", f"must be one of {', '.join(PRECISIONS)}")
    return precision


def _parse_metrics(args: Mapping[str, str], group: str, delimiter: str) -> tuple[str, ...]:
    if not args.get("metrics", "").strip():
        raise BadParameter("metrics", "required: a list of metrics, e.g. "
                           "count_sent,count_unique_confirmed_opened", MISSING)
    known = known_metrics(group)
    names: list[str] = []
    for name in (part.strip() for part in args["metrics"].split(delimiter)):
        if not name or name in names:
            continue
        if name in NOT_KEPT:
            raise BadParameter("metrics", f"{name}: engage sees no deliveries or bounces "
                               "(it runs before the MTA), so it does not keep this metric")
        if name not in known:
            what = "not on this endpoint" if name in ALL_METRICS else "unknown metric"
            raise BadParameter("metrics", f"{what}: {name!r} (available: "
                               f"{', '.join(known)})")
        names.append(name)
    return tuple(names)


def parse_limit(args: Mapping[str, str]) -> int:
    text = args.get("limit", str(DEFAULT_LIMIT)).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadParameter("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def _parse_order_by(args: Mapping[str, str], metrics: tuple[str, ...]) -> str:
    order_by = args.get("order_by", metrics[0]).strip()
    if order_by not in metrics:
        raise BadParameter("order_by", "must be one of the metrics requested")
    return order_by


def read_sums(client: redis.Redis, prefix: str, query: MetricsQuery, now: float,
              retention_days: int) -> list[tuple[str, dict[bytes, int]]]:
    """(period label or "", {field: total}) over every bucket the query needs, summed by
    SUM_LUA next to the data (engage.metrics.buckets: folded hours and every shard's
    buckets). Hours older than the retention or more than a day ahead are known empty:
    not read."""
    codes = sorted({known_metrics(query.group)[name] for name in query.metrics})
    kinds = ["l"] if query.group == "link-name" else (
        (["s"] if "s" in codes else []) + (["e"] if set(codes) - {"s"} else []))
    low = max(query.start, int(now - retention_days * 86400) // HOUR * HOUR - HOUR)
    high = min(query.end, int(now + 86400))
    names = hour_names(low, high) if low < high else []
    labels = (period_label(hour, query.precision, query.zone) if query.group == "time-series"
              else "" for hour in hours(low, high))
    return sum_hours(client, prefix, list(zip(labels, names)), kinds, codes)


def summarize(query: MetricsQuery,
              sums: Iterable[tuple[str, Mapping[bytes, int]]]) -> list[dict[str, Any]]:
    """The ``results`` list: totals per group (or per period label), filters applied."""
    wanted = known_metrics(query.group)
    codes = {wanted[name] for name in query.metrics}
    totals: dict[str, dict[str, int]] = {}
    if query.group == "time-series":
        for hour in hours(query.start, query.end):
            totals.setdefault(period_label(hour, query.precision, query.zone), {})
    elif query.group == "":
        totals[""] = {}
    for label, fields in sums:
        for raw, value in fields.items():
            found = _code_and_group(query, codes, raw)
            if found is None:
                continue
            code, key = found
            group = totals.setdefault(label if query.group == "time-series" else key, {})
            group[code] = group.get(code, 0) + int(value)
    return _results(query, totals)


def _code_and_group(query: MetricsQuery, codes: set[str], raw: bytes) -> tuple[str, str] | None:
    """(field code, group value) of a field, or None when the query does not want it."""
    parts = aggregates.split_field(raw.decode("utf-8", "replace"))
    if len(parts) < 3 or parts[0] not in codes:
        return None
    if query.campaigns is not None and parts[1] not in query.campaigns:
        return None
    if query.sending_domains is not None and parts[2] not in query.sending_domains:
        return None
    column = {"campaign": 1, "sending-domain": 2, "link-name": 3}.get(query.group)
    return parts[0], "" if column is None or column >= len(parts) else parts[column]


def _results(query: MetricsQuery, totals: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    wanted = known_metrics(query.group)
    rows = []
    for key, counts in totals.items():
        row: dict[str, Any] = {GROUPS[query.group]: key} if query.group else {}
        row.update((name, counts.get(wanted[name], 0)) for name in query.metrics)
        rows.append(row)
    if query.group in ("", "time-series"):
        return rows
    rows = [row for row in rows if any(row[name] for name in query.metrics)]
    column = GROUPS[query.group]
    rows.sort(key=lambda row: (-row[query.order_by], row[column]))
    return rows[:query.limit]


def run(client: redis.Redis, prefix: str, query: MetricsQuery, now: float,
        retention_days: int) -> list[dict[str, Any]]:
    return summarize(query, read_sums(client, prefix, query, now, retention_days))
