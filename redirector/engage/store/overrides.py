"""Recomputed verdicts: overrides kept beside the events, never in the stream.

The hash ``{p}{tag}verdicts`` of each shard maps an event's public ``event_id`` to the compact JSON of its
new ``engage`` object (with ``raw_verdict``, the verdict the event was stored with).
Readers apply an override when there is one (``apply``: one HMGET per page of events).
Overrides of events older than the event retention are trimmed by each recompute, and
the hash expires one day after the retention when no recompute refreshes it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from engage.store import keys
from engage.store.redisconn import hash_fields

EVENT_ID_AT = len(b'{"event_id":"')  # stored events as read back start with their id


def key(prefix: str, shard: int) -> str:
    return keys.verdicts(prefix, shard)


def event_id_of(item: bytes) -> bytes:
    """The event_id of an event as the events API reads it back (JSON text, id first)."""
    return item[EVENT_ID_AT:item.index(b'"', EVENT_ID_AT)]


def apply(client: redis.Redis, prefix: str, shard: int, items: Sequence[bytes]) -> list[bytes]:
    """The events of one shard (JSON text) with their overridden ``engage`` where one exists."""
    if not items:
        return []
    found = client.hmget(key(prefix, shard), [event_id_of(item) for item in items])
    return [item if override is None else spliced(item, override)
            for item, override in zip(items, found)]


def spliced(item: bytes, override: bytes | str) -> bytes:
    event = json.loads(item)
    event["engage"] = json.loads(override)
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def read(client: redis.Redis, prefix: str, shard: int,
         event_ids: Sequence[str]) -> list[dict[str, Any] | None]:
    """The overrides of these events of one shard (None where there is none), in one
    round trip."""
    if not event_ids:
        return []
    return [None if value is None else json.loads(value)
            for value in client.hmget(key(prefix, shard), list(event_ids))]


def write(client: redis.Redis, prefix: str, shard: int,
          changes: Mapping[str, dict[str, Any] | None], retention_seconds: int) -> None:
    """Set (or, for None, delete) overrides in one round trip; refresh the hash's expiry."""
    sets = {event_id: json.dumps(engage, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            for event_id, engage in changes.items() if engage is not None}
    deletes = [event_id for event_id, engage in changes.items() if engage is None]
    pipe = client.pipeline(transaction=False)
    if sets:
        pipe.hset(key(prefix, shard), mapping=hash_fields(sets))
    if deletes:
        pipe.hdel(key(prefix, shard), *deletes)
    pipe.expire(key(prefix, shard), retention_seconds + 86400)
    pipe.execute()


def trim(client: redis.Redis, prefix: str, shard: int, oldest_event_id: int) -> int:
    """Delete overrides of events older than ``oldest_event_id`` (trimmed from the stream
    already); how many. Walks the hash with HSCAN, so Redis is never held for long."""
    stale: list[bytes] = []
    removed = 0
    for field, _ in client.hscan_iter(key(prefix, shard), count=1000):
        if int(field) < oldest_event_id:
            stale.append(field)
        if len(stale) >= 1000:
            removed += _delete(client, key(prefix, shard), stale)
            stale = []
    return removed + _delete(client, key(prefix, shard), stale)


def _delete(client: redis.Redis, name: str, fields: Iterable[bytes]) -> int:
    names = list(fields)
    return int(client.hdel(name, *names)) if names else 0
