"""The events API: SparkPost's ``GET /api/v1/events/message`` over the EventLog indexes.

``parse_query`` turns request arguments into a Query or raises BadParameter naming the
parameter. ``search`` never walks the whole stream: from/to become a score range on the
index sorted sets; when every filter is served by one index (the event type is part of
every index key) ``total_count`` is a sum of ZCOUNTs and a page is one merged range read.
Otherwise the most selective index is scanned and the other filters applied to the
events it yields, at most ``max_scan`` of them (else 400). Results are newest first;
the cursor carries the score of the last result returned.
"""
from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import redis

from engage.query import BadParameter, parse_delimiter, parse_list, parse_time
from engage.store.events import DIMENSIONS, TYPES, EventError, EventLog, score_of, subject_digest

MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 1000
DEFAULT_WINDOW = 86400
SCAN_CHUNK = 2000
LIST_PARAMS = ("events", "campaigns", "recipients", "messages", "transmissions",
               "subjects", "sending_domains")
PARAMS = frozenset(LIST_PARAMS + ("from", "to", "cursor", "per_page", "delimiter"))
# SparkPost's event types; those we never produce are valid filters that match nothing.
SPARKPOST_TYPES = frozenset(TYPES + (
    "delivery", "injection", "bounce", "delay", "policy_rejection", "out_of_band",
    "spam_complaint", "generation_failure", "generation_rejection", "list_unsubscribe",
    "link_unsubscribe", "amp_click", "amp_open", "amp_initial_open", "sms_status"))
EVENT_FIELDS = {"campaigns": "campaign_id", "messages": "message_id",
                "transmissions": "transmission_id", "subjects": "subject"}


@dataclass(frozen=True)
class Query:
    start_ms: int  # inclusive
    end_ms: int  # exclusive
    per_page: int = DEFAULT_PER_PAGE
    before: int | None = None  # from the cursor: only scores below this one
    types: tuple[str, ...] = TYPES
    filters: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    results: bytes  # JSON objects as stored plus event_id, joined by commas
    total_count: int
    cursor: str | None


def parse_query(args: Mapping[str, str], now: float) -> Query:
    """Validate every parameter; the first bad one raises BadParameter."""
    for name in args:
        if name not in PARAMS:
            raise BadParameter(name, "unsupported parameter")
    delimiter = parse_delimiter(args)
    end = parse_time(args["to"], "to") if "to" in args else now
    start = parse_time(args["from"], "from") if "from" in args else end - DEFAULT_WINDOW
    if start >= end:
        raise BadParameter("from", "must be earlier than to")
    lists = {name: parse_list(args[name], name, delimiter)
             for name in LIST_PARAMS if name in args}
    wanted = lists.pop("events", frozenset(TYPES))
    unknown = wanted - SPARKPOST_TYPES
    if unknown:
        raise BadParameter("events", f"unknown event type {sorted(unknown)[0]!r}")
    types = tuple(kind for kind in TYPES if kind in wanted)
    for name in ("recipients", "sending_domains"):
        if name in lists:
            lists[name] = frozenset(value.lower() for value in lists[name])
    # round(), not int(): 1795990589.836 * 1000 is 1795990589835.9998.
    return Query(round(start * 1000), round(end * 1000), _parse_per_page(args),
                 _parse_cursor(args.get("cursor", "initial")), types, lists)


def _parse_per_page(args: Mapping[str, str]) -> int:
    text = args.get("per_page", str(DEFAULT_PER_PAGE))
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_PER_PAGE:
        raise BadParameter("per_page", f"must be a whole number from 1 to {MAX_PER_PAGE}")
    return int(text)


def encode_cursor(score: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{score}".encode()).decode().rstrip("=")


def _parse_cursor(text: str) -> int | None:
    if text == "initial":
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    version, _, score = raw.partition(":")
    if version != "v1" or not score.isdigit():
        raise BadParameter("cursor", "not a cursor this API returned")
    return int(score)


def next_link(path: str, args: Mapping[str, str], cursor: str | None) -> dict[str, str]:
    """SparkPost's ``links``: ``next`` repeats the query with the new cursor, or is absent."""
    if cursor is None:
        return {}
    params = {name: value for name, value in args.items() if name != "cursor"}
    params["cursor"] = cursor
    return {"next": f"{path}?{urlencode(params)}"}


def search(log: EventLog, query: Query, max_scan: int, now: float | None = None) -> Page:
    """One page of events matching ``query``, newest first, with the total match count."""
    low = max(query.start_ms, log.cutoff_ms(now)) * 1000
    high = query.end_ms * 1000 - 1
    top = high if query.before is None else min(high, query.before - 1)
    filters = dict(query.filters)
    if not query.types or low > high:
        return Page(b"", 0, None)
    try:
        name, keys, candidates = _driving_index(log, query.types, filters, low, high)
        residual = {key: values for key, values in filters.items() if key != name}
        if not residual:
            return _indexed_page(log, keys, candidates, low, top, query.per_page)
        if candidates > max_scan:
            raise BadParameter(sorted(residual)[0], f"this query would scan {candidates} "
                               "events; narrow from/to or add an indexed filter")
        return _scanned_page(log, keys, residual, low, high, top, query.per_page)
    except redis.RedisError as exc:
        raise EventError(str(exc)) from exc


def _index_values(name: str, values: frozenset[str]) -> list[str]:
    return [subject_digest(value) for value in values] if name == "subjects" else list(values)


def _driving_index(log: EventLog, types: tuple[str, ...], filters: dict[str, frozenset[str]],
                   low: int, high: int) -> tuple[str, list[str], int]:
    """The indexed filter with the fewest events in range: (its name, its keys, the count)."""
    options = {name: [log.index_key(kind, DIMENSIONS[name], value) for kind in types
                      for value in _index_values(name, values)]
               for name, values in filters.items() if name in DIMENSIONS}
    if not options:
        options = {"": [log.index_key(kind) for kind in types]}
    pipe = log.client.pipeline(transaction=False)
    for keys in options.values():
        for key in keys:
            pipe.zcount(key, low, high)
    counts = iter(pipe.execute())
    totals = {name: sum(next(counts) for _ in keys) for name, keys in options.items()}
    name = min(totals, key=totals.__getitem__)
    return name, options[name], totals[name]


def _newest(log: EventLog, keys: list[str], top: int, low: int,
            count: int) -> list[tuple[int, bytes]]:
    """The ``count`` newest (score, stream id) with low <= score <= top across ``keys``."""
    pipe = log.client.pipeline(transaction=False)
    for key in keys:
        pipe.zrevrangebyscore(key, top, low, start=0, num=count)
    merged = heapq.merge(*([(-score_of(member), member) for member in reply]
                           for reply in pipe.execute()))
    newest: list[tuple[int, bytes]] = []
    for negative, member in merged:
        if newest and newest[-1][1] == member:
            continue  # one event indexed under two recipients of the same filter
        newest.append((-negative, member))
        if len(newest) == count:
            break
    return newest


def _indexed_page(log: EventLog, keys: list[str], total: int, low: int, top: int,
                  per_page: int) -> Page:
    joined, last, more = log.page(keys, top, low, per_page)
    return Page(joined, total, encode_cursor(last) if more else None)


def _scanned_page(log: EventLog, keys: list[str], residual: dict[str, frozenset[str]],
                  low: int, high: int, top: int, per_page: int) -> Page:
    results: list[bytes] = []
    total, more, ceiling, last = 0, False, high, 0
    while ceiling >= low:
        chunk = _newest(log, keys, ceiling, low, SCAN_CHUNK)
        if not chunk:
            break
        for text in log.fetch_json(member for _, member in chunk):
            event = json.loads(text)
            if not matches(event, residual):
                continue
            total += 1
            if int(event["event_id"]) <= top:
                more = more or len(results) == per_page
                if len(results) < per_page:
                    results.append(text)
                    last = int(event["event_id"])
        ceiling = chunk[-1][0] - 1
    return Page(b",".join(results), total, encode_cursor(last) if more else None)


def matches(event: Mapping[str, Any], filters: Mapping[str, frozenset[str]]) -> bool:
    """Whether an event passes every filter (values within one filter are alternatives)."""
    for name, values in filters.items():
        if name == "recipients":
            recipients = event.get("rcpt_to_list") or [event.get("rcpt_to", "")]
            if values.isdisjoint(recipients):
                return False
        elif name == "sending_domains":
            if event.get("sending_domain", "").lower() not in values:
                return False
        elif event.get(EVENT_FIELDS[name], "") not in values:
            return False
    return True
