"""The events API: SparkPost's ``GET /api/v1/events/message`` over the EventLog indexes.

``parse_query`` turns request arguments into a Query or raises BadParameter naming the
parameter. Every parameter SparkPost documents is accepted: ``timezone`` (an IANA name)
says how a ``from``/``to`` without an offset is read; the filters on fields our events
carry work (``recipient_domains`` and ``sending_domains`` by whole domain segments, as
SparkPost's keyword search does); the filters on what engage never has (bounce classes,
templates, subaccounts, A/B tests, mailbox providers ...) are validated and match
nothing, as ``events=delivery`` does. ``search`` never walks the whole stream: from/to
become a score range on the index sorted sets; when every filter is served by one index
(the event type is part of every index key) ``total_count`` is a sum of ZCOUNTs and a
page is one merged range read. Otherwise the most selective index is scanned and the
other filters applied to the events it yields, at most ``max_scan`` of them (else 400).
``event_ids`` are read by id (an event_id names its stream entry). Results are newest
first; the cursor carries the score of the last result returned and the window of the
first page, so ``total_count`` stays the same over a walk even without ``to``.
"""
from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import redis

from engage.query import (
    MISSING,
    BadParameter,
    parse_delimiter,
    parse_list,
    parse_time,
    parse_zone,
)
from engage.store.events import DIMENSIONS, TYPES, EventError, EventLog, score_of, subject_digest

MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 1000
DEFAULT_WINDOW = 86400
SCAN_CHUNK = 2000
MAX_EVENT_IDS = 10_000
TIME_FORM = "ISO 8601, e.g. 2024-05-01T12:00:00Z (or 2024-05-01T08:00 with timezone)"
# Filters on fields our events carry: indexed (DIMENSIONS) or applied to scanned events.
LIST_PARAMS = ("events", "campaigns", "recipients", "messages", "transmissions",
               "subjects", "sending_domains", "recipient_domains", "from_addresses",
               "ip_addresses")
# Filters on what engage never records (it sits before the MTA, has no templates,
# subaccounts, A/B tests or IP pools): valid, and they match nothing.
NEVER_PARAMS = ("bounce_classes", "reasons", "templates", "sending_ips", "ip_pools",
                "subaccounts", "ab_tests", "ab_test_versions", "mailbox_providers",
                "mailbox_provider_regions")
NUMERIC_PARAMS = ("bounce_classes", "ab_test_versions")
PARAMS = frozenset(LIST_PARAMS + NEVER_PARAMS + (
    "from", "to", "cursor", "per_page", "delimiter", "timezone", "event_ids"))
LOWERCASE = ("recipients", "sending_domains", "recipient_domains", "from_addresses")
# SparkPost's event types; those we never produce are valid filters that match nothing.
SPARKPOST_TYPES = frozenset(TYPES + (
    "delivery", "injection", "bounce", "delay", "policy_rejection", "out_of_band",
    "spam_complaint", "generation_failure", "generation_rejection", "list_unsubscribe",
    "link_unsubscribe", "amp_click", "amp_open", "amp_initial_open", "sms_status"))
EVENT_FIELDS = {"campaigns": "campaign_id", "messages": "message_id",
                "transmissions": "transmission_id", "subjects": "subject",
                "ip_addresses": "ip_address"}


@dataclass(frozen=True)
class Query:
    start_ms: int  # inclusive
    end_ms: int  # exclusive
    per_page: int = DEFAULT_PER_PAGE
    before: int | None = None  # from the cursor: only scores below this one
    types: tuple[str, ...] = TYPES
    filters: Mapping[str, frozenset[str]] = field(default_factory=dict)
    event_ids: frozenset[int] | None = None
    fixed: bool = False  # the window came from a cursor: clip it no further


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
    zone = parse_zone(args.get("timezone", "UTC"))
    end = parse_time(args["to"], "to", zone, TIME_FORM) if "to" in args else now
    start = (parse_time(args["from"], "from", zone, TIME_FORM) if "from" in args
             else end - DEFAULT_WINDOW)
    if start >= end:
        raise BadParameter("from", "must be earlier than to")
    lists = {name: parse_list(args[name], name, delimiter)
             for name in LIST_PARAMS if name in args}
    wanted = lists.pop("events", frozenset(TYPES))
    unknown = wanted - SPARKPOST_TYPES
    if unknown:
        raise BadParameter("events", f"unknown event type {sorted(unknown)[0]!r}")
    types = tuple(kind for kind in TYPES if kind in wanted)
    if _never_matches(args, delimiter):
        types = ()
    for name in LOWERCASE:
        if name in lists:
            lists[name] = frozenset(value.lower() for value in lists[name])
    # round(), not int(): 1795990589.836 * 1000 is 1795990589835.9998.
    query = Query(round(start * 1000), round(end * 1000), _parse_per_page(args), None, types,
                  lists, _parse_event_ids(args, delimiter))
    return _with_cursor(query, args.get("cursor", "initial"))


def _never_matches(args: Mapping[str, str], delimiter: str) -> bool:
    """Validate the filters on what we never record; True when one is given."""
    given = [name for name in NEVER_PARAMS if name in args]
    for name in given:
        values = parse_list(args[name], name, delimiter)
        if name in NUMERIC_PARAMS and not all(value.isdigit() for value in values):
            raise BadParameter(name, "must list whole numbers")
    if "ab_test_versions" in args and "ab_tests" not in args:
        raise BadParameter("ab_tests", "required with ab_test_versions", MISSING)
    return bool(given)


def _parse_event_ids(args: Mapping[str, str], delimiter: str) -> frozenset[int] | None:
    if "event_ids" not in args:
        return None
    values = parse_list(args["event_ids"], "event_ids", delimiter)
    if not all(value.isdigit() and len(value) <= 20 for value in values):
        raise BadParameter("event_ids", "must list event_id values (decimal numbers)")
    if len(values) > MAX_EVENT_IDS:
        raise BadParameter("event_ids", f"at most {MAX_EVENT_IDS} ids per request")
    return frozenset(int(value) for value in values)


def _parse_per_page(args: Mapping[str, str]) -> int:
    text = args.get("per_page", str(DEFAULT_PER_PAGE))
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_PER_PAGE:
        raise BadParameter("per_page", f"must be a whole number from 1 to {MAX_PER_PAGE}")
    return int(text)


def encode_cursor(score: int, start_ms: int | None = None, end_ms: int | None = None) -> str:
    """The score of the last result and, from v2 on, the walk's window (ms)."""
    text = f"v1:{score}" if start_ms is None else f"v2:{score}:{start_ms}:{end_ms}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _with_cursor(query: Query, text: str) -> Query:
    """The query as the cursor continues it: below its score, in its window (v2)."""
    if text == "initial":
        return query
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    version, *numbers = raw.split(":")
    shape = {"v1": 1, "v2": 3}.get(version)
    if shape is None or len(numbers) != shape or not all(n.isdigit() for n in numbers):
        raise BadParameter("cursor", "not a cursor this API returned")
    if version == "v1":
        return replace(query, before=int(numbers[0]))
    score, start_ms, end_ms = map(int, numbers)
    return replace(query, before=score, start_ms=start_ms, end_ms=end_ms, fixed=True)


def next_link(path: str, args: Mapping[str, str], cursor: str | None) -> dict[str, str]:
    """SparkPost's ``links``: ``next`` repeats the query with the new cursor, or is absent."""
    if cursor is None:
        return {}
    params = {name: value for name, value in args.items() if name != "cursor"}
    params["cursor"] = cursor
    return {"next": f"{path}?{urlencode(params)}"}


def search(log: EventLog, query: Query, max_scan: int, now: float | None = None) -> Page:
    """One page of events matching ``query``, newest first, with the total match count."""
    start_ms = query.start_ms if query.fixed else max(query.start_ms, log.cutoff_ms(now))
    low, high = start_ms * 1000, query.end_ms * 1000 - 1
    top = high if query.before is None else min(high, query.before - 1)
    filters = dict(query.filters)
    if not query.types or low > high:
        return Page(b"", 0, None)
    window = Window(start_ms, query.end_ms)
    try:
        if query.event_ids is not None:
            return _by_ids(log, query, low, high, top, window)
        name, keys, candidates = _driving_index(log, query.types, filters, low, high)
        residual = {key: values for key, values in filters.items() if key != name}
        if not residual:
            return _indexed_page(log, keys, candidates, low, top, query.per_page, window)
        if candidates > max_scan:
            raise BadParameter(sorted(residual)[0], f"this query would scan {candidates} "
                               "events; narrow from/to or add an indexed filter")
        return _scanned_page(log, keys, residual, low, high, top, query.per_page, window)
    except redis.RedisError as exc:
        raise EventError(str(exc)) from exc


@dataclass(frozen=True)
class Window:
    """The window of a walk's first page, carried by every cursor of the walk."""

    start_ms: int
    end_ms: int

    def cursor(self, score: int) -> str:
        return encode_cursor(score, self.start_ms, self.end_ms)


def _by_ids(log: EventLog, query: Query, low: int, high: int, top: int,
            window: Window) -> Page:
    """``event_ids``: each names its stream entry (ms-seq), read in one round trip; the
    other filters and the window are applied to what is found."""
    wanted = sorted((score for score in query.event_ids or () if low <= score <= high),
                    reverse=True)
    found = log.fetch_json(f"{score // 1000}-{score % 1000}" for score in wanted)
    kept = [text for text in found if _passes(json.loads(text), query)]
    shown = [text for text in kept if _event_id(text) <= top]
    more = len(shown) > query.per_page
    page = shown[:query.per_page]
    return Page(b",".join(page), len(kept),
                window.cursor(_event_id(page[-1])) if more and page else None)


ID_START = len(b'{"event_id":"')


def _event_id(text: bytes) -> int:
    """The event_id at the front of a stored event's JSON text (EventLog puts it first)."""
    return int(text[ID_START:text.index(b'"', ID_START)])


def _passes(event: Mapping[str, Any], query: Query) -> bool:
    return event.get("type") in query.types and matches(event, query.filters)


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
                  per_page: int, window: Window) -> Page:
    joined, last, more = log.page(keys, top, low, per_page)
    return Page(joined, total, window.cursor(last) if more else None)


def _scanned_page(log: EventLog, keys: list[str], residual: dict[str, frozenset[str]],
                  low: int, high: int, top: int, per_page: int, window: Window) -> Page:
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
    return Page(b",".join(results), total, window.cursor(last) if more else None)


def matches(event: Mapping[str, Any], filters: Mapping[str, frozenset[str]]) -> bool:
    """Whether an event passes every filter (values within one filter are alternatives)."""
    for name, values in filters.items():
        if name == "recipients":
            if values.isdisjoint(recipients_of(event)):
                return False
        elif name == "recipient_domains":
            domains = {rcpt.rpartition("@")[2] for rcpt in recipients_of(event)}
            if not any(keyword_match(value, domain) for value in values for domain in domains):
                return False
        elif name == "sending_domains":
            domain = str(event.get("sending_domain", "")).lower()
            if not any(keyword_match(value, domain) for value in values):
                return False
        elif name == "from_addresses":
            if str(event.get("friendly_from", "")).lower() not in values:
                return False
        elif event.get(EVENT_FIELDS[name], "") not in values:
            return False
    return True


def recipients_of(event: Mapping[str, Any]) -> Iterable[str]:
    """The lowercased recipients an event stands for (several for a multi-recipient message)."""
    return event.get("rcpt_to_list") or [event.get("rcpt_to", "")]


def keyword_match(keyword: str, domain: str) -> bool:
    """SparkPost's keyword search by domain segment: ``example`` and ``example.com`` match
    ``mail.example.com``; ``ample`` does not."""
    wanted, parts = keyword.strip(".").split("."), domain.split(".")
    size = len(wanted)
    return any(parts[i:i + size] == wanted for i in range(len(parts) - size + 1))
