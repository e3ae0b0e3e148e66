"""Erasure of one recipient address from Redis: ``engage forget`` and the forget API.

Promises: afterwards no key name and no stored value under the prefix mentions the
address (engage.erasure.scrub says what "mentions" means). Each key is handled by its
family in engage.store.keys; a key of no family is an error (the summary is incomplete),
never silently kept as if it were clean. Message records and templates are rewritten
in place (same key, same TTL), so every tracked link keeps resolving and redirecting;
events that mention the address are deleted from their stream (XDEL), their index
entries and verdict overrides with them, and the stream compacted; webhook batches and
dead letters lose those events (engage.erasure.webhookdata). Aggregate counters keep
their counts; a counter named after a link or campaign that holds the address is
renamed without it. Per-message status counts stay. Idempotent, and safe while the
milter, redirector and webhook workers run: every rewrite is a compare-and-set, and a
batch whose events are all gone is settled by the worker as "events expired".

Layouts and shards: the SCAN sees every key of both layouts; the events, their indexes
and verdict overrides, the webhook queues and dead letters are erased shard by shard, and
layout 1's as one more shard (engage.erasure.streams, engage.erasure.webhookdata). A
script only ever touches the keys of one shard (one hash slot on a Redis Cluster): the
keys of a SCAN chunk are filtered one shard's group at a time, pipelined.

Cost: one SCAN of the whole keyspace (no per-message index: message records stay as
small as they are) plus one pass over each shard's events stream, both filtered inside
Redis by Lua scripts in chunks of ``chunk`` keys or entries, so no call holds Redis for
long; compaction copies one shard's stream at a time, when there is room for it.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from engage.erasure import lua
from engage.erasure.buckets import BucketEraser
from engage.erasure.scrub import Address, scrub_record, scrub_template
from engage.erasure.streams import StreamEraser, by_slot
from engage.erasure.webhookdata import ATTEMPTS, WebhookEraser, text_of
from engage.store import aggregates, eventindex, keys
from engage.store.events import TYPES
from engage.store.keys import Erasure
from engage.store.pressure import DEFAULT_HIGH_WATER
from engage.store.redisconn import queue_script, readable_shards, scan_keys

log = logging.getLogger(__name__)
CHUNK = 1000
# Hashes of counters read per FIELDS_LUA call: an hour's link counters can hold thousands
# of fields, and 1000 such hashes held Redis 1.2 s in one call (20: about 40 ms).
COUNTERS_PER_CALL = 20
MAX_REPORTED = 100  # unknown keys named in a summary (the log says how many)
COMPACTION = keys.BY_NAME["stream compaction"]

@dataclass
class Summary:
    """What one forget removed or rewrote (all zero: nothing to do), and what it read."""

    events: int = 0
    index_entries: int = 0
    index_keys: int = 0
    verdicts: int = 0
    messages: int = 0
    templates: int = 0
    aggregate_fields: int = 0
    webhook_batches: int = 0
    dead_letters: int = 0
    unknown_keys: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)  # streams rewritten without the bytes
    uncompacted: list[str] = field(default_factory=list)  # no room to compact: bytes kept
    keys_scanned: int = 0
    events_scanned: int = 0
    seconds: float = 0.0

    CHANGES = ("events", "index_entries", "index_keys", "verdicts", "messages", "templates",
               "aggregate_fields", "webhook_batches", "dead_letters")

    @property
    def changed(self) -> bool:
        return any(getattr(self, name) for name in self.CHANGES)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "complete": not self.unknown_keys, **asdict(self),
                "seconds": round(self.seconds, 3)}


class Forgetter:
    """Erases addresses under one key prefix; the connection is passed in."""

    def __init__(self, client: redis.Redis, prefix: str = "engage:",
                 chunk: int = CHUNK, high_water: float = DEFAULT_HIGH_WATER) -> None:
        self.client, self.prefix, self.chunk = client, prefix, chunk
        self.high_water = high_water  # [redis] events_high_water: a copy must stay below it
        self.streams = StreamEraser(client, prefix, chunk, high_water)
        self._filter = client.register_script(lua.FILTER_LUA)
        self._set_if = client.register_script(lua.SET_IF_LUA)
        self._fields = client.register_script(lua.FIELDS_LUA)
        self._rename_field = client.register_script(lua.RENAME_FIELD_LUA)
        self._webhooks = WebhookEraser(client, prefix, chunk)
        self._buckets = BucketEraser(client)

    def forget(self, address: Address) -> Summary:
        """Erase ``address``. Raises redis.RedisError when Redis fails (run it again)."""
        started = time.monotonic()
        summary = Summary()
        # first: new events carry no address
        named, counters, copies = self._records(address, summary)
        deleted = self.streams.erase(address, summary)
        self._index_keys(address, named, summary)
        self._aggregates(address, counters, summary)
        summary.webhook_batches, dead = self._webhooks.erase(address, deleted)
        summary.dead_letters = sum(dead.values())
        for shard in sorted(dead):
            self.streams.compact_or_note(keys.webhook_dead(self.prefix, shard), summary)
        if copies:  # a crashed compaction's copy holds what its stream held
            self.client.unlink(*copies)
        summary.seconds = time.monotonic() - started
        log.info("forget: %d events, %d index entries, %d index keys, %d verdicts, "
                 "%d message records, %d templates, %d aggregate fields, %d webhook batches, "
                 "%d dead letters; %d streams compacted; %d keys and %d events read in %.2f s",
                 summary.events, summary.index_entries, summary.index_keys, summary.verdicts,
                 summary.messages, summary.templates, summary.aggregate_fields,
                 summary.webhook_batches, summary.dead_letters, len(summary.compacted),
                 summary.keys_scanned, summary.events_scanned, summary.seconds)
        if summary.unknown_keys:
            log.error("forget: incomplete: %d keys belong to no key family (engage.store.keys) "
                      "and may hold the address; they were left as they are",
                      len(summary.unknown_keys))
        return summary

    # ------------------------------------------------------------ records, templates
    def _scan(self) -> Iterator[list[bytes]]:
        """Every key under the prefix, a chunk at a time."""
        yield from scan_keys(self.client, keys.scan_pattern(self.prefix), self.chunk)

    def _records(self, address: Address,
                 summary: Summary) -> tuple[list[str], list[str], list[bytes]]:
        """One pass over the keyspace, each key by its family: records and templates that
        mention the address are rewritten; keys of no family are noted (an error). The
        names of keys whose name holds the address, the hashes of counters, and the
        compaction copies a crashed forget left."""
        named: list[str] = []
        counters: list[str] = []
        copies: list[bytes] = []
        for chunk in self._scan():
            summary.keys_scanned += len(chunk)
            values: list[bytes] = []
            buckets: list[bytes] = []
            for raw_key in chunk:
                key = text_of(raw_key)
                family = keys.family_of(self.prefix, key)
                if family is None:
                    if len(summary.unknown_keys) < MAX_REPORTED:
                        summary.unknown_keys.append(key)
                    continue
                if address.mentions(key):
                    named.append(key)
                if family.erasure is Erasure.REWRITE_VALUE:
                    values.append(raw_key)
                elif family.erasure is Erasure.REWRITE_RECORDS:
                    buckets.append(raw_key)
                elif family.erasure is Erasure.REWRITE_FIELDS:
                    counters.append(key)
                elif family is COMPACTION:
                    copies.append(raw_key)
            if values:
                self._rewrite_values(values, address, summary)
            if buckets:
                groups = by_slot(self.client, self.prefix, buckets)
                summary.messages += self._buckets.erase(groups, address)
        summary.unknown_keys.sort()
        return named, counters, copies

    def _rewrite_values(self, stored: list[bytes], address: Address, summary: Summary) -> None:
        """Filter a chunk's values inside Redis, one shard's keys per script, pipelined."""
        pipe = self.client.pipeline(transaction=False)
        for group in by_slot(self.client, self.prefix, stored):
            queue_script(self._filter, pipe, group, list(address.needles))
        for found in pipe.execute():
            for i in range(0, len(found), 2):
                key, raw = text_of(found[i]), found[i + 1]
                is_record = keys.family_of(self.prefix, key) is keys.BY_NAME["message"]
                scrub = scrub_record if is_record else scrub_template
                if self._rewrite(key, raw, scrub, address):
                    if is_record:
                        summary.messages += 1
                    else:
                        summary.templates += 1

    def _rewrite(self, key: str, raw: bytes | str | None,
                 scrub: Callable[[bytes | str, Address], str | None], address: Address) -> bool:
        """Compare-and-set ``scrub(value)`` until it sticks; False when nothing to change."""
        for _ in range(ATTEMPTS):
            if raw is None:
                return False
            new = scrub(raw, address)
            if new is None:
                return False
            if self._set_if(keys=[key], args=[raw, new]):
                return True
            raw = self.client.get(key)
        raise redis.RedisError(f"{key} kept changing while being rewritten")

    # ------------------------------------------------------------ index keys
    def _index_keys(self, address: Address, named: list[str], summary: Summary) -> None:
        """Drop index keys named after the address (``{p}el:<type>:r:<address>`` ...).
        A key of another family whose name holds it cannot be erased by name: an error."""
        doomed = {name for name in named
                  if _erasure(self.prefix, name) is Erasure.FOLLOW_EVENTS}
        doomed |= {key for shard in readable_shards(self.client, self.prefix)
                   for key in eventindex.read(self.prefix, shard,
                                              [(kind, "r", address.text) for kind in TYPES])}
        summary.index_keys += int(self.client.delete(*sorted(doomed)))
        summary.unknown_keys += sorted(name for name in named if name not in doomed)

    # ------------------------------------------------------------ aggregates
    def _aggregates(self, address: Address, counters: list[str], summary: Summary) -> None:
        """Counter fields named after a link (its URL or name) or a campaign that holds the
        address are renamed without it; their counts add to the field of that name."""
        needles = sorted({*address.needles,
                          *(aggregates.escape(n.decode()).encode() for n in address.needles)})
        calls = [group[start:start + COUNTERS_PER_CALL]
                 for group in by_slot(self.client, self.prefix, counters)
                 for start in range(0, len(group), COUNTERS_PER_CALL)]
        for call in calls:  # one shard's hashes per call
            found = self._fields(keys=call, args=needles)
            for i in range(0, len(found), 2):
                key, field = text_of(found[i]), text_of(found[i + 1])
                parts = aggregates.split_field(field)
                if not any(address.mentions(part) for part in parts):
                    continue
                new = "|".join(aggregates.escape(address.cut(part)) for part in parts)
                summary.aggregate_fields += int(self._rename_field(keys=[key], args=[field, new]))


def _erasure(prefix: str, key: str) -> Erasure | None:
    family = keys.family_of(prefix, key)
    return family.erasure if family else None


def address_from_json(body: bytes) -> Address:
    """The address of a forget API request ``{"recipient": "<address>"}``; ValueError
    with the reason otherwise."""
    try:
        request = json.loads(body)
    except ValueError:
        raise ValueError('the body must be JSON: {"recipient": "<address>"}') from None
    recipient = request.get("recipient") if isinstance(request, dict) else None
    if not isinstance(recipient, str):
        raise ValueError('"recipient" (a string) is required')
    return Address.parse(recipient)
