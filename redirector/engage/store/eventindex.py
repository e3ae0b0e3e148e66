"""Where the events API finds events: the index keys an event is written under and read from.

An index (``{p}{tag}el:...``, engage.store.keys) is a sorted set while it is small (a
listpack of up to ``LISTED`` entries, ~30 B each) and becomes a stream past that: a
skiplist costs ~128 B an entry, a stream ~17 B. Its entries are the event's stream id
(the stream's entry id doubles as the index entry's), each with its ordinal ``n`` in the
index, so the count between two ids is a difference of ordinals, two O(log N) reads: the
events API's exact ``total_count`` without a sorted set (engage.store.scripts.eventindex).
Per-message filters (Message-ID, transmission) share one index for every type: a message
has few events, and the API filters their type when asked (engage.web.eventsapi). The
sorted sets of releases before (``{p}ei:...``, one per type) are read until they expire.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engage.store import keys
from engage.store.eventids import id_base, score_of
from engage.store.redisconn import queue_script, readable_shards
from engage.store.scripts.eventindex import COUNT_LUA, NEWEST_LUA

TYPELESS = frozenset({"m", "x"})  # one index per value for every event type
ALL_TYPES = "all"  # the type part of a TYPELESS index's name
MAX_SEQ = 2**64 - 1

Spec = tuple[str, str, str]  # (type, dimension, value); dimension "": every event of a type


def written(prefix: str, shard: int, kind: str, pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The indexes an event of ``kind`` with filter values ``pairs`` is added to."""
    return [keys.event_index(prefix, shard, kind, listed=True), *(
        keys.event_index(prefix, shard, ALL_TYPES if dim in TYPELESS else kind, dim, value,
                         listed=True) for dim, value in pairs)]


def read(prefix: str, shard: int, specs: Iterable[Spec]) -> list[str]:
    """Every key that may hold events of ``specs`` in a shard, each once: the indexes and
    the sorted sets of releases before. A TYPELESS index holds other types too."""
    found: dict[str, None] = {}
    for kind, dim, value in specs:
        new_kind = ALL_TYPES if dim in TYPELESS else kind
        found[keys.event_index(prefix, shard, new_kind, dim, value, listed=True)] = None
        found[keys.event_index(prefix, shard, kind, dim, value)] = None
    return list(found)


def typeless(specs: Iterable[Spec]) -> bool:
    """Whether the indexes of ``specs`` hold events of types not asked for."""
    return any(dim in TYPELESS for _, dim, _ in specs)


def id_range(low: int, high: int, shard: int) -> tuple[str, str]:
    """The stream ids of ``shard`` whose score (event_id) is within low..high, as the first
    and last id of an XRANGE: score = ms * 1000 + base + min(seq, cap)."""
    base, cap = id_base(shard)
    ms, rest = divmod(low, 1000)
    rest -= base
    first = f"{ms}-0" if rest <= 0 else f"{ms + 1}-0" if rest > cap else f"{ms}-{rest}"
    ms, rest = divmod(high, 1000)
    rest -= base
    if rest < 0:
        ms, rest = ms - 1, MAX_SEQ
    last = f"{ms}-{MAX_SEQ if rest >= cap else rest}" if ms >= 0 else "0-0"
    return first, last


def range_args(low: int, top: int, shard: int) -> list[Any]:
    """The ARGV tail of the index scripts: the shard's id base and cap, the id range."""
    return [*id_base(shard), *id_range(low, top, shard)]


class Indexes:
    """Counts and newest entries of index keys over every shard; connection passed in."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._count = client.register_script(COUNT_LUA)
        self._newest = client.register_script(NEWEST_LUA)

    def counts(self, groups: Sequence[Sequence[Spec]], low: int, high: int) -> list[int]:
        """Events within low..high of each group of specs, summed over the shards (one
        script per shard, one pipeline). Raises redis.RedisError."""
        shards = readable_shards(self.client, self.prefix)
        per_shard = [[read(self.prefix, shard, specs) for specs in groups] for shard in shards]
        pipe = self.client.pipeline(transaction=False)
        for shard, names in zip(shards, per_shard):
            flat = [name for group in names for name in group]
            queue_script(self._count, pipe, flat, [low, high, *range_args(low, high, shard)])
        totals = [0] * len(groups)
        for names, reply in zip(per_shard, pipe.execute()):
            counts = iter(reply)
            for n, group in enumerate(names):
                totals[n] += sum(int(next(counts)) for _ in group)
        return totals

    def newest(self, specs: Sequence[Spec], top: int, low: int,
               count: int) -> list[list[tuple[int, int, bytes]]]:
        """For each index of ``specs`` in every shard, up to ``count`` (score, shard,
        stream id) with low <= score <= top, newest first. Raises redis.RedisError."""
        shards = readable_shards(self.client, self.prefix)
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            queue_script(self._newest, pipe, read(self.prefix, shard, specs),
                         [top, low, count, *range_args(low, top, shard)])
        return [[(score_of(member, shard), shard, member) for member in members]
                for shard, lists in zip(shards, pipe.execute()) for members in lists]
