"""Redis memory as the redirector sees it: may events still be written?

Mail comes before events. Above ``[redis] events_high_water`` of ``maxmemory`` the
redirector stops recording events, so the milter's link writes keep the room left; the
milter never looks at the mark and writes until Redis is really full. The reading is
``INFO memory``, at most once a second per process (``MemoryGauge``). Without a
maxmemory there is no mark. A write Redis refuses for memory (noeviction: "OOM command
not allowed") is counted by Redis itself (``INFO errorstats``: errorstat_OOM), for every
client, which /healthz and ``engage doctor`` show as refused writes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import redis

from engage.store.redisconn import is_cluster, shard_masters

MAX_AGE = 1.0  # seconds a reading is used
DEFAULT_HIGH_WATER = 0.9  # [redis] events_high_water


@dataclass(frozen=True)
class Memory:
    used: int
    limit: int  # maxmemory; 0: none
    high_water: float  # share of maxmemory above which no events are recorded

    @property
    def mark(self) -> int:
        return int(self.limit * self.high_water)

    @property
    def above(self) -> bool:
        return bool(self.limit) and self.used >= self.mark

    @property
    def full(self) -> bool:
        return bool(self.limit) and self.used >= self.limit

    def as_dict(self) -> dict[str, Any]:
        state = "full" if self.full else "above-high-water" if self.above else "ok"
        return {"state": state, "used": self.used, "maxmemory": self.limit,
                "high_water": self.mark, "events": "paused" if self.above else "recording"}


def nodes_of(client: Any, prefix: str) -> list[Any]:
    """The Redis servers that hold engage's keys: the one Redis, or on a cluster the
    masters of the 24 shards' slots (one, when the prefix carries a hash tag)."""
    if not is_cluster(client):
        return [client]
    return [client.get_redis_connection(node) for node, _ in shard_masters(client, prefix)]


def read_memory(client: Any, prefix: str, high_water: float) -> Memory:
    """INFO memory now; on a cluster, of the master nearest its maxmemory (its shards'
    writes are the first refused). Raises redis.RedisError."""
    readings = []
    for node in nodes_of(client, prefix):
        info = node.info("memory")
        readings.append(Memory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)),
                               high_water))
    return max(readings, key=lambda memory: memory.used / memory.limit if memory.limit else 0.0)


def refused_writes(client: Any, prefix: str) -> Optional[int]:
    """Commands Redis refused for memory since it started (errorstat_OOM, summed over the
    masters), None if unknown (Redis before 6.2, or INFO not allowed)."""
    total = 0
    for node in nodes_of(client, prefix):
        try:
            stats = node.info("errorstats")
        except redis.RedisError:
            return None
        if not any(name.startswith("errorstat_") for name in stats) and stats:
            return None
        total += int(stats.get("errorstat_OOM", {}).get("count", 0))
    return total


def is_refused(exc: BaseException) -> bool:
    """Whether an error (or the Redis error it wraps) is Redis refusing a write for memory."""
    cause = exc.__cause__ or exc
    return isinstance(cause, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(cause)


class MemoryGauge:
    """``events_allowed()``: below the high-water mark, or memory unknown (Redis away: the
    write will fail by itself). One INFO per MAX_AGE seconds per process at most."""

    def __init__(self, client: Any, prefix: str, high_water: float,
                 max_age: float = MAX_AGE) -> None:
        self.client = client
        self.prefix = prefix
        self.high_water = high_water
        self.max_age = max_age
        self._reading: tuple[float, Optional[Memory]] = (float("-inf"), None)

    def memory(self, now: Optional[float] = None) -> Optional[Memory]:
        moment = time.monotonic() if now is None else now
        taken, memory = self._reading  # one tuple: threads see a whole reading or the last
        if moment - taken < self.max_age:
            return memory
        try:
            memory = read_memory(self.client, self.prefix, self.high_water)
        except redis.RedisError:
            memory = None
        self._reading = (moment, memory)
        return memory

    def events_allowed(self) -> bool:
        memory = self.memory()
        return memory is None or not memory.above
