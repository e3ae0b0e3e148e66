"""Recompute the verdicts of stored events with the current rules and thresholds.

Reads each shard's events stream (engage.store.keys; layout 1's as one more) in time
order (XRANGE, 1000 at a time; the streams themselves are never written), classifies each
open and click again from what the event holds (address, user agent, timestamp and
injection time, and the signals the redirector recorded in ``engage.signals``) and writes
an override (engage.store.overrides) into that shard's hash, only where the verdict
differs from the one in effect; an override that would restate the stored verdict is
deleted instead. Seeing the whole stream, it also knows what the click path could not:
the clicks of a message that came later in the same second (the first links of a burst
become scanner too) and clicks from an address shortly before it hit the trap link.
Both are about one message, whose events are all in its shard: the shards are walked one
after the other, each with its own window.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from engage.settings import Settings
from engage.store import keys, overrides
from engage.store.events import TYPES, EventLog, score_of
from engage.store.links import TRAP_LINK_NAME
from engage.store.redisconn import readable_shards, stream_entries
from engage.store.trackevent import iso_time
from engage.verdicts.judge import thresholds
from engage.verdicts.machines import Rules
from engage.verdicts.rules import HUMAN, Facts, Thresholds, classify, engage_object

log = logging.getLogger(__name__)
READ_CHUNK = 1000
WRITE_CHUNK = 1000


@dataclass
class Recomputed:
    """What a recompute did: the events whose verdict changed and the span it covered."""

    start: float  # epoch seconds: events from here ...
    end: float  # ... to here were examined
    examined: int = 0
    changed: list[str] = field(default_factory=list)  # public event ids
    firsts: dict[int, int] = field(default_factory=dict)  # shard -> its first changed event_id
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    trimmed: int = 0
    dry_run: bool = False

    def report(self) -> str:
        what = "would change" if self.dry_run else "changed"
        lines = [f"examined {self.examined} events from {iso_time(self.start)} to "
                 f"{iso_time(self.end)}; {what} {len(self.changed)}"]
        lines += [f"  {old} -> {new}: {count}"
                  for (old, new), count in sorted(self.transitions.items())]
        if self.dry_run:
            lines.append("dry run: nothing written")
        elif self.trimmed:
            lines.append(f"removed {self.trimmed} overrides of events past retention")
        return "\n".join(lines)


def parse_time(text: str) -> float:
    """ISO 8601 (a trailing Z or no zone means UTC) -> epoch seconds."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass
class _Seen:
    """One stored event on its way through the sliding window."""

    event_id: str
    event: dict[str, Any]
    at: float
    second_key: tuple[str, int] | None  # (transmission, second) for clicks
    trap: bool


class _Window:
    """Bursts and trap hits around each event: an event is judged once the stream has
    moved ``reach`` seconds past it, so clicks after it count as well as before."""

    def __init__(self, trap_window: int) -> None:
        self.trap_window = trap_window
        self.reach = trap_window + 1.0
        self.pending: deque[_Seen] = deque()
        self.bursts: dict[tuple[str, int], set[str]] = {}
        self.traps: dict[str, list[tuple[float, str]]] = {}

    def add(self, seen: _Seen) -> Iterator[_Seen]:
        """Take one event; yield those that are ready."""
        self.pending.append(seen)
        event = seen.event
        if seen.second_key is not None:
            link = f"{event.get('target_link_url', '')}\0{event.get('target_link_name', '')}"
            self.bursts.setdefault(seen.second_key, set()).add(link)
        if seen.trap:
            self.traps.setdefault(event.get("transmission_id", ""), []).append(
                (seen.at, event.get("ip_address", "")))
        while self.pending and self.pending[0].at < seen.at - self.reach:
            yield self.pending.popleft()
        self._forget(seen.at - 2 * self.reach)

    def drain(self) -> Iterator[_Seen]:
        while self.pending:
            yield self.pending.popleft()

    def links_in_second(self, seen: _Seen) -> int:
        return len(self.bursts.get(seen.second_key, ())) if seen.second_key else 0

    def near_trap(self, seen: _Seen) -> bool:
        ip = seen.event.get("ip_address", "")
        return any(abs(at - seen.at) <= self.trap_window and address == ip
                   for at, address in self.traps.get(seen.event.get("transmission_id", ""), ()))

    def _forget(self, before: float) -> None:
        for key in [key for key in self.bursts if key[1] < before]:
            del self.bursts[key]
        for transmission, hits in list(self.traps.items()):
            kept = [hit for hit in hits if hit[0] >= before]
            if kept:
                self.traps[transmission] = kept
            else:
                del self.traps[transmission]


def facts_of(seen: _Seen, window: _Window) -> Facts:
    """The classifier's input, rebuilt from a stored event and its neighbours."""
    event = seen.event
    engage = event.get("engage") or {}
    signals = engage.get("signals") or {}
    injected = _epoch(event.get("injection_time", ""))
    kind = event.get("type", "")
    click = kind == "click"
    return Facts(
        kind, str(signals.get("method", "GET")), event.get("ip_address", ""),
        event.get("user_agent", ""), seen.at - injected if injected else None,
        max(int(signals.get("links_in_second", 0)), window.links_in_second(seen)),
        click and seen.trap,
        click and not seen.trap and (bool(signals.get("after_trap")) or window.near_trap(seen)))


def _epoch(text: str) -> float | None:
    try:
        value = parse_time(text) if text else None
    except ValueError:
        return None
    return value if value else None  # injection_time 0 (unknown) reads as 1970


def _seen(entry_id: bytes, event: dict[str, Any], shard: int) -> _Seen | None:
    if event.get("type") not in TYPES:
        return None
    at = _epoch(event.get("timestamp", "")) or score_of(entry_id, shard) / 1e6
    second_key = (event.get("transmission_id", ""), int(at)) if event["type"] == "click" else None
    trap = event["type"] == "click" and (
        event.get("target_link_name") == TRAP_LINK_NAME
        or bool(((event.get("engage") or {}).get("signals") or {}).get("trap")))
    return _Seen(str(event["event_id"]), event, at, second_key, trap)


def recompute(client: redis.Redis, settings: Settings, rules: Rules,
              since: float | None = None, dry_run: bool = False,
              now: float | None = None) -> Recomputed:
    """Re-classify the events stored since ``since`` (default: all within retention).
    Returns the changed event ids, the first of each shard and the span covered, for a
    rebuild of aggregates."""
    now = time.time() if now is None else now
    log_ = EventLog(client, settings.key_prefix, settings.events_retention_days)
    start = max(since if since is not None else 0.0, log_.cutoff_ms(now) / 1000)
    result = Recomputed(start, start, dry_run=dry_run)
    for shard in readable_shards(client, settings.key_prefix):
        _recompute_shard(client, settings, rules, shard, result, now)
        if not dry_run:
            result.trimmed += overrides.trim(client, settings.key_prefix, shard,
                                             log_.cutoff_ms(now) * 1000)
    log.info("verdicts recomputed: %d examined, %d changed%s", result.examined,
             len(result.changed), " (dry run)" if dry_run else "")
    return result


def _recompute_shard(client: redis.Redis, settings: Settings, rules: Rules, shard: int,
                     result: Recomputed, now: float) -> None:
    limits, window = thresholds(settings), _Window(settings.trap_window)
    stream = keys.events(settings.key_prefix, shard)
    batch: list[tuple[_Seen, dict[str, Any]]] = []
    log_ = EventLog(client, settings.key_prefix, settings.events_retention_days)
    for entry_id, event in _entries(log_, shard, stream, int(result.start * 1000)):
        seen = _seen(entry_id, event, shard)
        if seen is None:
            continue
        result.examined += 1
        result.end = max(result.end, seen.at)
        for ready in window.add(seen):
            batch.append(_judged(ready, window, rules, limits))
            if len(batch) >= WRITE_CHUNK:
                _settle(client, settings, shard, batch, result, now)
                batch = []
    batch += [_judged(ready, window, rules, limits) for ready in window.drain()]
    _settle(client, settings, shard, batch, result, now)


def _entries(log_: EventLog, shard: int, stream: str,
             start_ms: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(stream id, whole event) from ``start_ms`` on, READ_CHUNK at a time."""
    low = f"{start_ms}-0"
    while True:
        chunk = stream_entries(log_.client.xrange(stream, min=low, max="+", count=READ_CHUNK))
        yield from zip((entry_id for entry_id, _ in chunk), log_.decoded(shard, chunk))
        if len(chunk) < READ_CHUNK:
            return
        low = "(" + chunk[-1][0].decode()


def _judged(seen: _Seen, window: _Window, rules: Rules, limits: Thresholds) -> tuple[_Seen, dict[str, Any]]:
    facts = facts_of(seen, window)
    return seen, engage_object(classify(facts, rules, limits), facts)


def _settle(client: redis.Redis, settings: Settings, shard: int,
            batch: list[tuple[_Seen, dict[str, Any]]], result: Recomputed, now: float) -> None:
    """Compare with the verdicts in effect, write the overrides that changed (all of
    ``batch`` is in ``shard``: so is its overrides hash)."""
    if not batch:
        return
    current = overrides.read(client, settings.key_prefix, shard,
                             [seen.event_id for seen, _ in batch])
    changes: dict[str, dict[str, Any] | None] = {}
    for (seen, new), override in zip(batch, current):
        raw = (seen.event.get("engage") or {}).get("verdict", HUMAN)
        effective = override["verdict"] if override else raw
        if new["verdict"] == effective:
            continue
        changes[seen.event_id] = None if new["verdict"] == raw else \
            {**new, "raw_verdict": raw, "recomputed_at": iso_time(now)}
        result.changed.append(seen.event_id)
        result.firsts.setdefault(shard, int(seen.event_id))
        result.transitions[(effective, new["verdict"])] += 1
    if changes and not result.dry_run:
        overrides.write(client, settings.key_prefix, shard, changes,
                        settings.events_retention_days * 86400)
