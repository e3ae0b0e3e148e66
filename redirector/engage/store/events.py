"""Engagement events: SparkPost ``track_event`` objects, kept in one Redis stream.

``build_event`` is pure: (type, resolved token, request facts, time) -> dict. ``EventLog``
appends an event in one round trip (a Lua script: XADD to ``{p}events`` plus one index
sorted set per filterable value, see ``index_keys``, plus the message's status hash
``{p}ms:<message key>``: first open/click time by HSETNX, so two simultaneous first opens
leave exactly one ``opened_at``, and counts) and trims everything older than the
retention window (stream by MINID, indexes by score); in the same script, the hourly
metrics aggregates (engage.store.aggregates). Event ids are the stream
entry ids as one decimal number (ms * 1000 + seq), so they sort by time. Link keys
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from engage.store import aggregates, keys, overrides
from engage.store.links import status_key
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
def append_ids_key(prefix: str, decisecond: int) -> str:
    """The append ids of one tenth of a second (a set of integers, APPEND_ID_TTL s)."""
    return keys.append_ids(prefix, decisecond)


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
    """What bounds the opens one network can make us store (engage.web.opengate builds it)."""

    repeat_key: str
    repeat_window: int  # seconds; 0: no repeat counting
    limit_key: str
    limit: int  # recorded opens per window; 0: no limit
    window: int


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


def score_of(entry_id: str | bytes) -> int:
    """The index score (and public event_id) of a stream entry id ``ms-seq``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms) * 1000 + min(int(seq), 999)


def with_event_id(entry_id: str | bytes, stored: bytes) -> bytes:
    """The stored JSON object with its ``event_id`` put first, still as JSON text."""
    return b'{"event_id":"%d",' % score_of(entry_id) + stored[1:]


def decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry (as XRANGE/XREADGROUP give it) back into the event object."""
    event: dict[str, Any] = json.loads(with_event_id(entry_id, fields[b"e"]))
    return event


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
        self.stream = keys.events(prefix)
        self._append = client.register_script(APPEND_LUA)
        self._fetch = client.register_script(FETCH_LUA)
        self._page = client.register_script(PAGE_LUA)

    def index_key(self, kind: str, dim: str = "", value: str = "") -> str:
        """``{p}ei:<type>`` holds every event of a type; ``{p}ei:<type>:<dim>:<value>`` a subset."""
        return keys.event_index(self.prefix, kind, dim, value)

    def cutoff_ms(self, now: float | None = None) -> int:
        return int(((time.time() if now is None else now) - self.retention) * 1000)

    def _keys_args(self, event: dict[str, Any], now: float | None,
                   gate: OpenGate | None = None) -> tuple[list[str], list[Any]]:
        keys, args = self._event_keys_args(event, now)
        decisecond, append_id = new_append_id()
        keys.append(append_ids_key(self.prefix, decisecond))
        args += [""] * (12 - len(args))
        args += [3 if gate else 1, append_id, APPEND_ID_TTL]
        if gate:
            keys += [gate.repeat_key, gate.limit_key]
            args += [gate.repeat_window, gate.limit, gate.window]
        return keys, args

    def _event_keys_args(self, event: dict[str, Any],
                         now: float | None) -> tuple[list[str], list[Any]]:
        kind = event["type"]
        status = STATUS_KINDS.get(kind, "") if event.get("transmission_id") else ""
        keys = [self.stream]
        agg_keys: list[str] = []
        agg_args: list[Any] = []
        if status:
            keys.append(status_key(self.prefix, event["transmission_id"]))
            agg_keys, agg_args = aggregates.update_keys_args(self.prefix, event, self.metrics_days)
        keys += agg_keys
        keys.append(self.index_key(kind))
        keys += [self.index_key(kind, dim, value) for dim, value in index_values(event)]
        cutoff = self.cutoff_ms(now)
        return keys, [json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False), cutoff,
                      cutoff * 1000, self.retention + 86400, status,
                      event.get("timestamp", ""), self.status_ttl, *agg_args]

    def append(self, event: dict[str, Any], now: float | None = None,
               gate: OpenGate | None = None) -> str:
        """Store one event (one round trip): its stream id, or 'dup' (a resend of an
        append that was done), 'repeat' or 'limited' (``gate``). Raises EventError."""
        keys, args = self._keys_args(event, now, gate)
        try:
            entry_id = run_script(self.client, self._append, keys, args)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def append_many(self, events: Iterable[dict[str, Any]], now: float | None = None) -> None:
        """Store a batch in one round trip (imports, benchmarks). Raises EventError."""
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            keys, args = self._keys_args(event, now)
            queue_script(self._append, pipe, keys, args)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc

    def page(self, keys: Sequence[str], top: int, low: int, count: int) -> tuple[bytes, int, bool]:
        """Up to ``count`` events with low <= score <= top from the union of index ``keys``,
        newest first: (JSON objects joined by commas, score of the last one or 0, whether
        more follow). One round trip per PAGE_CHUNK events, so that no script holds Redis
        for long (about 10 ms per 1000 events)."""
        found: list[bytes] = []
        last, more = 0, True
        while more and len(found) < count:
            try:
                reply = self._page(keys=[self.stream, *keys],
                                   args=[top, low, min(PAGE_CHUNK, count - len(found))])
            except redis.RedisError as exc:
                raise EventError(str(exc)) from exc
            last, more = int(reply[0] or last), bool(reply[1])
            found += self._with_overrides(reply[2:])
            top = last - 1
        return b",".join(found), last, more

    def fetch_json(self, entry_ids: Iterable[str | bytes]) -> list[bytes]:
        """Events by stream id as JSON text with event_id, in the order given, in one round
        trip; ids already trimmed away are skipped. (Parsing 1000 XRANGE replies in redis-py
        costs ~50 ms; these flat strings a tenth of that.)"""
        ids = list(entry_ids)
        if not ids:
            return []
        try:
            flat = self._fetch(keys=[self.stream], args=ids)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        return self._with_overrides([with_event_id(flat[i], flat[i + 1])
                                     for i in range(0, len(flat), 2)])

    def _with_overrides(self, items: Sequence[bytes]) -> list[bytes]:
        """Recomputed verdicts (engage.store.overrides) in place of the stored ones."""
        try:
            return overrides.apply(self.client, self.prefix, items)
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
