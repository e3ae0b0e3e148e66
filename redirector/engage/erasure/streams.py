"""The events part of ``engage forget``: every shard's events stream (and layout 1's) is
read in chunks, filtered inside Redis (engage.erasure.lua); the events that mention the
address go with their index entries and verdict overrides, and the stream is compacted
so their bytes go too. Every call touches the keys of one shard, which is one hash slot
on a Redis Cluster; a stream's compaction copy is in its slot (keys.compacting).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.crc import key_slot

from engage.erasure import lua
from engage.erasure.scrub import Address
from engage.erasure.webhookdata import text_of
from engage.store import eventindex, keys
from engage.store.events import index_values, score_of
from engage.store.pressure import Memory
from engage.store.redisconn import is_cluster, queue_script, readable_shards

if TYPE_CHECKING:
    from engage.erasure.forget import Summary

log = logging.getLogger(__name__)
COMPACT_TRIES = 2  # a stream changed by someone else during the copy is copied once more
Name = TypeVar("Name", str, bytes)


def by_slot(client: Any, prefix: str, names: Iterable[Name]) -> list[list[Name]]:
    """Key names grouped so that one script may take each group: by shard, and on a
    cluster by hash slot (the same, but for layout 1's untagged keys, which are spread
    over slots there unless the prefix carries a tag)."""
    cluster = is_cluster(client)
    groups: dict[int, list[Name]] = {}
    for name in names:
        raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        group = key_slot(raw) if cluster else keys.shard_of_key(prefix, text_of(raw))
        groups.setdefault(group, []).append(name)
    return list(groups.values())


def _node_of(client: Any, key: str) -> Any:
    """The Redis that holds ``key``: the one Redis, or its slot's master on a cluster."""
    return client.get_redis_connection(client.get_node_from_key(key)) if is_cluster(client) else client


class StreamEraser:
    """Deletes an address's events from every shard under one key prefix, and compacts."""

    def __init__(self, client: redis.Redis, prefix: str, chunk: int, high_water: float) -> None:
        self.client, self.prefix, self.chunk, self.high_water = client, prefix, chunk, high_water
        self._stream = client.register_script(lua.STREAM_LUA)
        self._copy_chunk = client.register_script(lua.COPY_CHUNK_LUA)
        self._swap = client.register_script(lua.SWAP_LUA)
        self._unindex = client.register_script(lua.UNINDEX_LUA)

    def erase(self, address: Address, summary: Summary) -> dict[int, set[str]]:
        """Shard by shard: delete the events that mention the address, then compact that
        shard's stream (one shard's copy at a time needs room, not the whole keyspace's).
        The stream ids deleted, by shard."""
        deleted: dict[int, set[str]] = {}
        for shard in readable_shards(self.client, self.prefix):
            ids = self._shard(shard, address, summary)
            if ids:
                deleted[shard] = ids
                self.compact_or_note(keys.events(self.prefix, shard), summary)
        return deleted

    def _shard(self, shard: int, address: Address, summary: Summary) -> set[str]:
        """Reads up to the stream's end as it is when reached, so events appended
        meanwhile are looked at too."""
        stream = keys.events(self.prefix, shard)
        deleted: set[str] = set()
        last = "-"
        while True:
            reply = self._stream(keys=[stream], args=[last, self.chunk, *address.needles])
            if not reply[0]:
                return deleted
            last = text_of(reply[0])
            summary.events_scanned += int(reply[1])
            pairs = [(text_of(reply[i]), text_of(reply[i + 1])) for i in range(2, len(reply), 2)]
            doomed = [(entry_id, raw) for entry_id, raw in pairs if address.mentions(raw)]
            if doomed:
                self._delete(shard, doomed, summary)
                deleted.update(entry_id for entry_id, _ in doomed)

    def _delete(self, shard: int, doomed: list[tuple[str, str]], summary: Summary) -> None:
        """The events, their index entries and verdict overrides: all in the shard."""
        stream, verdicts = keys.events(self.prefix, shard), keys.verdicts(self.prefix, shard)
        indexes = [self._index_keys_of(shard, raw) for _, raw in doomed]
        pipe = self.client.pipeline(transaction=False)
        for (entry_id, _), index_keys in zip(doomed, indexes):
            pipe.xdel(stream, entry_id)
            queue_script(self._unindex, pipe, index_keys, [entry_id])
            pipe.hdel(verdicts, str(score_of(entry_id, shard)))
        replies = iter(pipe.execute())
        for _ in indexes:
            summary.events += next(replies)
            summary.index_entries += next(replies)
            summary.verdicts += next(replies)

    def _index_keys_of(self, shard: int, raw: str) -> list[str]:
        try:
            event = json.loads(raw)
            kind = event["type"]
            pairs = index_values(event)
        except (ValueError, KeyError, TypeError):
            return []  # not an event engage wrote: its stream entry goes, it has no index
        return eventindex.read(self.prefix, shard, [(kind, "", ""), *(
            (kind, dim, value) for dim, value in pairs)])

    # ------------------------------------------------------------ compaction
    def compact_or_note(self, stream: str, summary: Summary) -> None:
        if self.compact(stream):
            summary.compacted.append(stream)
        else:
            summary.uncompacted.append(stream)

    def compact(self, stream: str) -> bool:
        """Rewrite ``stream`` without the bytes its deleted entries leave behind (see
        engage.erasure.lua): chunks copied while appends go on, then one atomic swap that
        carries the tail, the counters and every consumer group with its pending entries.
        The copy needs as much memory as the stream: False, and nothing done, when it would
        take Redis past the events high-water mark (the milter's room), or when the stream
        kept losing entries to someone else while copied; a copy left by a failure is
        removed, so a half-built one never holds that room."""
        copy = keys.compacting(self.prefix, stream)
        self.client.unlink(copy)  # a crashed run's
        if is_cluster(self.client) and key_slot(copy.encode()) != key_slot(stream.encode()):
            log.warning("forget: %s not compacted: its copy would be in another hash slot "
                        "(a layout-1 stream under a prefix without a hash tag)", stream)
            return False
        for _ in range(COMPACT_TRIES):
            if not self._room_for(stream):
                log.warning("forget: %s not compacted: copying it would take Redis past its "
                            "events high-water mark; its deleted entries' bytes stay until "
                            "retention trims them", stream)
                return False
            if self._copy_and_swap(stream, copy):
                return True
        log.warning("forget: %s not compacted: entries were deleted from it while it was "
                    "copied (another forget?); run forget again", stream)
        return False

    def _copy_and_swap(self, stream: str, copy: str) -> bool:
        """False when the copy no longer matched the stream (the script dropped it)."""
        try:
            last = "-"
            while True:
                copied = text_of(self._copy_chunk(keys=[stream, copy], args=[last, self.chunk]))
                if not copied:
                    break
                last = copied
            swapped = self._swap(keys=[stream, copy, keys.compaction_replaced(self.prefix, stream)],
                                 args=[last])
        except redis.RedisError:
            self.client.unlink(copy)
            raise
        return int(swapped) != lua.SWAP_MISMATCH

    def _room_for(self, stream: str) -> bool:
        """Whether a copy of ``stream`` stays below the high-water mark of the Redis that
        holds it (on a cluster, its slot's master: the copy is in the same slot)."""
        info = _node_of(self.client, stream).info("memory")
        memory = Memory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)),
                        self.high_water)
        if not memory.limit:
            return True
        return memory.used + int(self.client.memory_usage(stream) or 0) < memory.mark
