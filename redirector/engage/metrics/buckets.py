"""Reading the hourly buckets of every shard (engage.store.keys; which shards:
engage.store.redisconn.readable_shards): script calls sent PIPELINE_CALLS per round trip.

The buckets are kept per shard, so a query over a window makes one script call per shard
(and layout 1) per group of hours: 25 times as many calls as one bucket per hour did. Each
call reads one shard's keys (one slot on a Redis Cluster) and holds Redis no longer than
before, since a shard's bucket holds at most the fields one bucket held. The calls go
chunk by chunk, all shards of a chunk together, so each round trip has work for every
master of a cluster (redis-py's cluster pipeline sends each node its share at once); and
at most PIPELINE_CALLS replies are held at a time, whatever the window.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import redis
from redis.commands.core import Script

from engage.store.events import EventError
from engage.store.redisconn import queue_script

PIPELINE_CALLS = 100


def run_calls(client: redis.Redis, script: Script,
              calls: Iterable[tuple[Sequence[str], Sequence[Any]]]) -> Iterator[Any]:
    """The replies of ``script`` called with each (keys, args), in order, PIPELINE_CALLS
    calls per round trip. Raises EventError when Redis fails."""
    pending = iter(calls)
    while batch := list(islice(pending, PIPELINE_CALLS)):
        pipe = client.pipeline(transaction=False)
        for names, args in batch:
            queue_script(script, pipe, names, args)
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise EventError(str(exc)) from exc
        yield from replies
