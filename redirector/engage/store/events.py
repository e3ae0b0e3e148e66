"""Engagement events: SparkPost ``track_event`` objects, kept in one Redis stream per shard.

``build_event`` is pure: (type, resolved token, request facts, time) -> dict. ``EventLog``
appends an event in one round trip to its message's shard (engage.store.keys: a Lua
script on one slot: XADD to ``{p}{tag}events`` plus one index per filterable value,
engage.store.eventindex, plus the message's status hash
``{p}ms:<message key>``: first open/click time by HSETNX, so two simultaneous first opens
leave exactly one ``opened_at``, and counts) and trims everything older than the
retention window (stream by MINID, indexes with it); in the same script, the hourly
metrics aggregates (engage.store.aggregates). Event ids are the stream entry ids as one
decimal number, ms * 1000 + the shard's base + seq (``score_of``), so they sort by time
across shards and no two shards give the same id. Pages merge the shards
(engage.store.eventpages). Link keys
are never touched here: event retention cannot break a tracked link. Readers (``page``,
``fetch_json``) get recomputed verdicts (engage.store.overrides) in place of the stored ones.

The events themselves are built by engage.store.trackevent (client fields bounded there).
Idempotent (docs/limits.md): each append carries an
id chosen before the first try, which the script adds to ``{p}eid:<decisecond>`` first, so
redis-py's resend after a timeout is a no-op ('dup'). An open may carry an ``OpenGate``:
a repeat of the same message from the same network within its window only bumps
``repeat_opens`` in the status hash ('repeat'); past the per-network limit nothing is
stored ('limited').
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from engage.store import aggregates, eventforms, eventindex, eventread, keys
from engage.store.eventids import entries_of as entries_of
from engage.store.eventids import id_base
from engage.store.eventids import score_of as score_of
from engage.store.eventids import with_event_id as with_event_id
from engage.store.eventpages import merged_page
from engage.store.links import Resolved, status_key
from engage.store.redisconn import queue_script, run_script
from engage.store.scripts.events import APPEND_LUA, FETCH_LUA, PAGE_LUA

# The track_event builders were defined here before engage.store.trackevent: tests and
# tools import them from here.
from engage.store.trackevent import MAX_CLIENT_FIELD as MAX_CLIENT_FIELD
from engage.store.trackevent import RequestFacts as RequestFacts
from engage.store.trackevent import build_event as build_event
from engage.store.trackevent import clip as clip
from engage.store.trackevent import iso_time as iso_time

TYPES = ("click", "open", "initial_open")
STATUS_KINDS = {"open": "o", "initial_open": "i", "click": "c"}
# Filter name in the events API -> index dimension letter.
DIMENSIONS = {"campaigns": "c", "recipients": "r", "messages": "m",
              "transmissions": "x", "subjects": "s"}
PAGE_CHUNK = 2000

APPEND_ID_TTL = 30  # seconds an append id is remembered: a resend runs right after the original


class EventError(Exception):
    """The event store cannot be reached or answered wrongly."""


# Key families of the append gate (built by engage.store.keys).
def append_ids_key(prefix: str, shard: int, decisecond: int) -> str:
    """The append ids of one tenth of a second (a set of integers, APPEND_ID_TTL s)."""
    return keys.append_ids(prefix, shard, decisecond)


def repeat_open_key(prefix: str, message_key: str, kind: str, client: str) -> str:
    """Set while ``client`` (a network digest) opened the message within the repeat
    window; ``kind`` o or i (STATUS_KINDS): the top and bottom pixel count apart."""
    return keys.repeat_open(prefix, message_key, kind, client)


def open_limit_key(prefix: str, network: str, window: int) -> str:
    """Opens recorded from ``network`` (as [privacy] ip_addresses allows) in one window."""
    return keys.open_limit(prefix, network, window)


def dropped_key(prefix: str) -> str:
    """Events the redirectors did not store, by reason (a hash of a few fields, no TTL)."""
    return keys.dropped(prefix)


@dataclass(frozen=True)
class OpenGate:
    """What bounds the opens one network can make us store (engage.web.opengate builds
    it): the repeat check, and whether the network is past its limit (its counter is in
    no shard: read before the append, counted after a recorded one)."""

    repeat_key: str
    repeat_window: int  # seconds; 0: no repeat counting
    over_limit: bool = False


def new_append_id(now: float | None = None) -> tuple[int, int]:
    """(decisecond, id): chosen once per event, before the first try."""
    moment = time.time() if now is None else now
    return int(moment * 10), secrets.randbits(62)


def subject_digest(subject: str) -> str:
    """Subjects are indexed by digest: keys stay short whatever the subject."""
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def index_values(event: dict[str, Any]) -> list[tuple[str, str]]:
    """(dimension, value) pairs under which an event can be found by the events API."""
    pairs = [("c", event["campaign_id"]), ("m", event["message_id"]),
             ("x", event["transmission_id"]), ("s", subject_digest(event["subject"]))]
    recipients = event.get("rcpt_to_list") or [event.get("rcpt_to", "")]
    pairs += [("r", rcpt) for rcpt in recipients]
    return [(dim, value) for dim, value in pairs if value]


def shard_of_event(event: dict[str, Any]) -> int:
    """The shard of an event: its message's (transmission_id is the message key)."""
    return keys.shard_of(str(event.get("transmission_id") or ""))


class EventLog:
    """Appends events to the stream with their indexes, reads them back; connection passed in."""

    def __init__(self, client: redis.Redis, prefix: str = "engage:",
                 retention_days: int = 10, link_retention_days: int = 0,
                 metrics_retention_days: int = aggregates.DEFAULT_RETENTION_DAYS) -> None:
        self.client = client
        self.prefix = prefix
        self.retention = retention_days * 86400
        self.status_ttl = link_retention_days * 86400  # the status lives as long as the links
        self.metrics_days = metrics_retention_days  # 0: no aggregates
        self._append = client.register_script(APPEND_LUA)
        self._fetch = client.register_script(FETCH_LUA)
        self._page = client.register_script(PAGE_LUA)
        self.indexes = eventindex.Indexes(client, prefix)

    def stream_of(self, shard: int) -> str:
        return keys.events(self.prefix, shard)

    def index_key(self, shard: int, kind: str, dim: str = "", value: str = "") -> str:
        """The index an event of ``kind`` with ``dim`` = ``value`` is added to (``el:<type>``
        holds every event of a type of a shard, ``el:<type>:<dim>:<value>`` a subset)."""
        return eventindex.written(self.prefix, shard, kind, [(dim, value)] if dim else [])[-1]

    def cutoff_ms(self, now: float | None = None) -> int:
        return int(((time.time() if now is None else now) - self.retention) * 1000)

    def _keys_args(self, event: dict[str, Any], now: float | None, gate: OpenGate | None = None,
                   resolved: Resolved | None = None, pending: tuple[str, bytes] | None = None
                   ) -> tuple[list[str], list[Any]]:
        shard = shard_of_event(event)
        keys, args, ms = self._event_keys_args(event, now, shard, resolved)
        decisecond, append_id = new_append_id()
        keys.append(append_ids_key(self.prefix, shard, decisecond))
        args += [""] * (12 - len(args))
        args += [2 if gate or pending else 1, append_id, APPEND_ID_TTL, *id_base(shard)]
        if gate:
            keys.append(gate.repeat_key)
            args += [gate.repeat_window, "1" if gate.over_limit else "0"]
        elif pending:  # a click's pending entry (stream, id): no open gate
            keys.append(pending[0])
            args += [0, "0"]
        args += [""] * (19 - len(args)) + [ms, pending[1] if pending else ""]
        return keys, args

    def _event_keys_args(self, event: dict[str, Any], now: float | None, shard: int,
                         resolved: Resolved | None) -> tuple[list[str], list[Any], Any]:
        kind = event["type"]
        status = STATUS_KINDS.get(kind, "") if event.get("transmission_id") else ""
        keys = [self.stream_of(shard)]
        agg_keys: list[str] = []
        agg_args: list[Any] = []
        if status:
            keys.append(status_key(self.prefix, event["transmission_id"]))
            agg_keys, agg_args = aggregates.update_keys_args(self.prefix, shard, event,
                                                             self.metrics_days)
        keys += agg_keys
        keys += eventindex.written(self.prefix, shard, kind, index_values(event))
        cutoff = self.cutoff_ms(now)
        text, ms = (eventforms.stored(event, resolved) if resolved is not None else
                    (json.dumps(event, separators=(",", ":"), ensure_ascii=False,
                                allow_nan=False), None))
        return keys, [text, cutoff,
                      cutoff * 1000, self.retention + 86400, status,
                      event.get("timestamp", ""), self.status_ttl, *agg_args], (
            "" if ms is None else ms)

    def append(self, event: dict[str, Any], now: float | None = None,
               gate: OpenGate | None = None, resolved: Resolved | None = None,
               pending: tuple[str, bytes] | None = None) -> str:
        """Store one event (one round trip): its stream id, or 'dup' (a resend of an
        append that was done; ``pending``, a click's (stream, entry id), already gone),
        'repeat' or 'limited' (``gate``). With the ``resolved`` token it came from, it is
        stored referring to its message (eventforms), else whole. Raises EventError."""
        keys, args = self._keys_args(event, now, gate, resolved, pending)
        try:
            entry_id = run_script(self.client, self._append, keys, args)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def append_many(self, events: Iterable[dict[str, Any]], now: float | None = None,
                    resolved: Sequence[Resolved] = ()) -> None:
        """Store a batch in one round trip (imports, benchmarks); ``resolved``, when given,
        one per event as ``append`` takes it. Raises EventError."""
        pipe = self.client.pipeline(transaction=False)
        for n, event in enumerate(events):
            keys, args = self._keys_args(event, now, None, resolved[n] if resolved else None)
            queue_script(self._append, pipe, keys, args)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc

    def page(self, specs: Sequence[tuple[str, str, str]], top: int, low: int,
             count: int) -> tuple[bytes, int, bool]:
        """Up to ``count`` events with low <= score <= top from the union of the indexes
        ``specs`` ((type, dimension, value); dimension "" for all of a type) over every
        shard and layout 1, newest first: (JSON objects joined by commas, score of the
        last one or 0, whether more follow). engage.store.eventpages merges the shards."""
        try:
            return merged_page(self, specs, top, low, count)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc

    def page_script(self, pipe: Any, shard: int, specs: Sequence[tuple[str, str, str]],
                    top: int, low: int, count: int) -> None:
        """Queue one shard's PAGE_LUA on ``pipe``."""
        index_keys = eventindex.read(self.prefix, shard, specs)
        queue_script(self._page, pipe, [self.stream_of(shard), *index_keys],
                     [top, low, count, *eventindex.range_args(low, top, shard)])

    def fetch_json(self, shard: int, entry_ids: Iterable[str | bytes]) -> list[bytes]:
        """Events of one shard by stream id as JSON text with event_id, in the order given,
        in one round trip; ids already trimmed away are skipped. (Parsing 1000 XRANGE
        replies in redis-py costs ~50 ms; these flat strings a tenth of that.)"""
        ids = list(entry_ids)
        if not ids:
            return []
        try:
            flat = self._fetch(keys=[self.stream_of(shard)], args=ids)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        return self.with_overrides(shard, [with_event_id(flat[i], flat[i + 1], shard)
                                           for i in range(0, len(flat), 2)])

    def fetch_many(self, entries: Sequence[tuple[int, str | bytes]]) -> list[bytes]:
        """Events by (shard, stream id), in the order given (missing ones skipped): one
        script per shard that has any, in one pipeline."""
        by_shard: dict[int, list[str | bytes]] = {}
        for shard, entry_id in entries:
            by_shard.setdefault(shard, []).append(entry_id)
        pipe = self.client.pipeline(transaction=False)
        for shard, ids in by_shard.items():
            queue_script(self._fetch, pipe, [self.stream_of(shard)], ids)
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        items = {shard: [with_event_id(flat[i], flat[i + 1], shard)
                         for i in range(0, len(flat), 2)] for shard, flat in zip(by_shard, replies)}
        texts = self.whole(items)
        found: dict[tuple[int, bytes], bytes] = {}
        for shard, flat in zip(by_shard, replies):
            for i, text in zip(range(0, len(flat), 2), texts[shard]):
                found[(shard, flat[i])] = text
        wanted = ((shard, entry_id if isinstance(entry_id, bytes) else entry_id.encode())
                  for shard, entry_id in entries)
        return [found[entry] for entry in wanted if entry in found]

    def with_overrides(self, shard: int, items: Sequence[bytes]) -> list[bytes]:
        """Events of a shard as read back (``{"event_id":"N",...}``) whole, with their
        recomputed verdicts (engage.store.eventread)."""
        return self.whole({shard: items})[shard]

    def whole(self, groups: Mapping[int, Sequence[bytes]]) -> dict[int, list[bytes]]:
        """``with_overrides`` of several shards' events in one round trip."""
        try:
            return eventread.whole(self.client, self.prefix, groups)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc

    def decoded(self, shard: int, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]
                ) -> list[dict[str, Any]]:
        """Stream entries of ``shard`` (as XRANGE gives them) as whole events, with their
        event_id and the verdicts they were stored with (recompute and rebuild read
        overrides themselves)."""
        items = [with_event_id(entry_id, fields[b"e"], shard) for entry_id, fields in entries]
        try:
            texts = eventread.whole(self.client, self.prefix, {shard: items}, recomputed=False)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        return [json.loads(text) for text in texts[shard]]
