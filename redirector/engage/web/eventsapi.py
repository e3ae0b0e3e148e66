"""The events API: SparkPost's ``GET /api/v1/events/message`` over the EventLog indexes.

``parse_query`` turns request arguments into a Query or raises BadParameter naming the
parameter. Every parameter SparkPost documents is accepted: ``timezone`` (an IANA name)
says how a ``from``/``to`` without an offset is read; the filters on fields our events
carry work (``recipient_domains`` and ``sending_domains`` by whole domain segments, as
SparkPost's keyword search does); the filters on what engage never has (bounce classes,
templates, subaccounts, A/B tests, mailbox providers ...) are validated and match
nothing, as ``events=delivery`` does. ``search`` never walks the whole stream: from/to
become a score range on the indexes (engage.store.eventindex); when every filter is
served by one index ``total_count`` is a sum of index counts and a page is one merged
range read (the per-message indexes hold every type: asking for some types of a message
filters them as below). Otherwise the most selective index is scanned and the
other filters applied to the events it yields, at most ``max_scan`` of them (else 400).
``event_ids`` are read by id (an event_id names its shard and stream entry). Every index
is one per shard (engage.store.keys): counts are summed and pages merged over the shards
and layout 1's stream (engage.store.eventpages). Results are newest first; the cursor
carries the score of the last result returned and the window of the
first page, so ``total_count`` stays the same over a walk even without ``to``.
"""
from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from engage.query import (
    BadParameter,
)
from engage.store.eventids import score_in
from engage.store.eventindex import typeless
from engage.store.events import (
    DIMENSIONS,
    TYPES,
    EventError,
    EventLog,
    entries_of,
    subject_digest,
)
from engage.web.eventsquery import (
    DEFAULT_PER_PAGE as DEFAULT_PER_PAGE,
)
from engage.web.eventsquery import (
    DEFAULT_WINDOW as DEFAULT_WINDOW,
)
from engage.web.eventsquery import (
    EVENT_FIELDS as EVENT_FIELDS,
)
from engage.web.eventsquery import (
    LIST_PARAMS as LIST_PARAMS,
)
from engage.web.eventsquery import (
    MAX_EVENT_IDS as MAX_EVENT_IDS,
)
from engage.web.eventsquery import (  # re-exported: the views and tests import them here
    MAX_PER_PAGE as MAX_PER_PAGE,
)
from engage.web.eventsquery import (
    NEVER_PARAMS as NEVER_PARAMS,
)
from engage.web.eventsquery import (
    PARAMS as PARAMS,
)
from engage.web.eventsquery import (
    SCAN_CHUNK as SCAN_CHUNK,
)
from engage.web.eventsquery import (
    SPARKPOST_TYPES as SPARKPOST_TYPES,
)
from engage.web.eventsquery import (
    Page as Page,
)
from engage.web.eventsquery import (
    Query as Query,
)
from engage.web.eventsquery import (
    encode_cursor as encode_cursor,
)
from engage.web.eventsquery import (
    next_link as next_link,
)
from engage.web.eventsquery import (
    parse_query as parse_query,
)


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
        name, specs, candidates = _driving_index(log, query.types, filters, low, high)
        residual = {key: values for key, values in filters.items() if key != name}
        if typeless(specs) and query.types != TYPES:  # its index holds every type
            residual["events"] = frozenset(query.types)
        if not residual:
            return _indexed_page(log, specs, candidates, low, top, query.per_page, window)
        if candidates > max_scan:
            raise BadParameter(sorted(residual)[0], f"this query would scan {candidates} "
                               "events; narrow from/to or add an indexed filter")
        return _scanned_page(log, specs, residual, low, high, top, query.per_page, window)
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
    """``event_ids``: each names its shard and stream entry (ms-seq), read in one round
    trip; the other filters and the window are applied to what is found."""
    wanted = sorted((score for score in query.event_ids or () if low <= score <= high),
                    reverse=True)
    found = log.fetch_many([entry for score in wanted for entry in entries_of(score)])
    asked = set(wanted)  # up to MAX_EVENT_IDS: a set, or this is quadratic
    found = [text for text in found if score_in(text) in asked]  # not a layout-1 namesake
    kept = [text for text in found if _passes(json.loads(text), query)]
    shown = [text for text in kept if score_in(text) <= top]
    more = len(shown) > query.per_page
    page = shown[:query.per_page]
    return Page(b",".join(page), len(kept),
                window.cursor(score_in(page[-1])) if more and page else None)


def _passes(event: Mapping[str, Any], query: Query) -> bool:
    return event.get("type") in query.types and matches(event, query.filters)


def _index_values(name: str, values: frozenset[str]) -> list[str]:
    return [subject_digest(value) for value in values] if name == "subjects" else list(values)


Spec = tuple[str, str, str]  # (type, dimension, value): one index, in every shard


def _driving_index(log: EventLog, types: tuple[str, ...], filters: dict[str, frozenset[str]],
                   low: int, high: int) -> tuple[str, list[Spec], int]:
    """The indexed filter with the fewest events in range: (its name, its indexes, the
    count summed over the shards), in one pipeline. A per-message index counts every type."""
    options = {name: [(kind, DIMENSIONS[name], value) for kind in types
                      for value in _index_values(name, values)]
               for name, values in filters.items() if name in DIMENSIONS}
    if not options:
        options = {"": [(kind, "", "") for kind in types]}
    totals = dict(zip(options, log.indexes.counts(list(options.values()), low, high)))
    name = min(totals, key=totals.__getitem__)
    return name, options[name], totals[name]


def _newest(log: EventLog, specs: list[Spec], top: int, low: int,
            count: int) -> list[tuple[int, int, bytes]]:
    """The ``count`` newest (score, shard, stream id) with low <= score <= top across the
    indexes ``specs`` of every shard."""
    merged = heapq.merge(*log.indexes.newest(specs, top, low, count),
                         key=lambda item: item[0], reverse=True)
    newest: list[tuple[int, int, bytes]] = []
    for score, shard, member in merged:
        if newest and newest[-1][1:] == (shard, member):
            continue  # one event indexed under two recipients of the same filter
        newest.append((score, shard, member))
        if len(newest) == count:
            break
    return newest


def _indexed_page(log: EventLog, specs: list[Spec], total: int, low: int, top: int,
                  per_page: int, window: Window) -> Page:
    joined, last, more = log.page(specs, top, low, per_page)
    return Page(joined, total, window.cursor(last) if more else None)


def _scanned_page(log: EventLog, specs: list[Spec], residual: dict[str, frozenset[str]],
                  low: int, high: int, top: int, per_page: int, window: Window) -> Page:
    results: list[bytes] = []
    total, more, ceiling, last = 0, False, high, 0
    while ceiling >= low:
        chunk = _newest(log, specs, ceiling, low, SCAN_CHUNK)
        if not chunk:
            break
        for text in log.fetch_many([(shard, member) for _, shard, member in chunk]):
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
        if name == "events":
            if event.get("type") not in values:
                return False
        elif name == "recipients":
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
