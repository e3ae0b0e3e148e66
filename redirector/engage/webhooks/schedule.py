"""When a webhook's loop looks at which shard, when a batch is ready, which shards it takes
from, and how long the loop may sleep (engage.webhooks.worker).

A webhook's events are in 24 shard streams (and layout 1's, while it has the group). The
loop keeps what it last saw waiting in each (how many, since when): a batch is ready
when ``batch_size`` events wait over all the shards, or when the oldest has waited the
batch interval, as one stream was (SparkPost's batches). It then takes from the shards
with events waiting, up to ``batch_size`` (engage.webhooks.assemble), each batch
starting one shard further, so a busy shard cannot starve the others. A shard is looked
at again when a new event comes in it, when a take there read none of ours, and every
IDLE seconds. Retries are looked for every second (one pipelined round
trip). When nothing is ready the loop sleeps until the earliest of those times and wakes
early on a new event in any of its streams: one blocking XREAD over all of them on one
Redis (or a cluster whose prefix puts every key in one slot); on a Redis Cluster whose
shards are spread over slots, where one XREAD cannot span them, it polls the streams'
newest ids every POLL seconds, in one pipelined round trip.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from engage.store.keys import LAYOUT1
from engage.store.redisconn import hash_tag, is_cluster, reply_text
from engage.webhooks.keys import Keys

RECHECK = 1.0  # seconds: the longest a shard's retries go unasked (one pipelined peek)
IDLE = 10.0  # seconds between looks at a shard with nothing new (a new entry wakes us)
BLOCK_MS = 1000  # longest XREAD block (under the connection's socket timeout)
POLL = 0.1  # seconds between polls of the streams where one XREAD cannot watch them all


class Schedule:
    """Per-shard timers and backlog of one webhook's loop (monotonic seconds); not
    thread-safe."""

    def __init__(self, shards: Sequence[int]) -> None:
        now = time.monotonic()
        self.shards = list(shards)
        self.look_at = dict.fromkeys(self.shards, now)  # a shard without a stream is left out
        self.waiting: dict[int, tuple[int, float]] = {}  # shard -> (events, oldest's arrival)
        self.due_at = dict.fromkeys(self.shards, now)
        self.claimable: set[int] = set()  # a retry is due there now
        self.after: dict[int, str] = {}  # the newest stream id seen: wake on later ones
        self._turn = 0  # where the next pick of a retry starts
        self._take_turn = 0  # where the next batch's plan starts

    def drop_stream(self, shard: int) -> None:
        """Its stream or group is gone: no more takes there (retries still come)."""
        self.look_at.pop(shard, None)
        self.after.pop(shard, None)
        self.waiting.pop(shard, None)

    # ------------------------------------------------------------------ due retries
    def due_expired(self) -> list[int]:
        """Shards whose retry timer ran out: ask Redis (BatchQueue.next_due)."""
        now = time.monotonic()
        return [s for s, at in self.due_at.items() if at <= now and s not in self.claimable]

    def learn_due(self, due_ms: dict[int, int]) -> None:
        for shard, ms in due_ms.items():
            if ms == 0:
                self.claimable.add(shard)
            else:
                self.due_in(shard, ms)

    def due_in(self, shard: int, ms: int) -> None:
        """Next retry in ``ms`` (-1: none known): not claimable until then."""
        self.claimable.discard(shard)
        wait = RECHECK if ms < 0 else min(ms / 1000, RECHECK)
        if shard in self.due_at:
            self.due_at[shard] = time.monotonic() + wait

    def due_by(self, shard: int, ms: int) -> None:
        """A retry comes due in ``ms`` (one just failed): look then at the latest."""
        if shard in self.due_at and shard not in self.claimable:
            self.due_at[shard] = min(self.due_at[shard], time.monotonic() + ms / 1000)

    def pick_claim(self) -> int | None:
        """The next shard with a retry due, from where the last pick stopped."""
        count = len(self.shards)
        for step in range(count):
            index = (self._turn + step) % count
            if self.shards[index] in self.claimable:
                self._turn = index + 1
                return self.shards[index]
        return None

    # ------------------------------------------------------------------ new events
    def to_look(self) -> list[int]:
        """Shards to look at now (BatchQueue.peek)."""
        now = time.monotonic()
        return [s for s, at in self.look_at.items() if at <= now]

    def look_now(self, shard: int) -> None:
        """A new entry came there, or a take there left some unknown: look again."""
        if shard in self.look_at:
            self.look_at[shard] = time.monotonic()

    def learn(self, shard: int, waiting: int, age_ms: int, newest: str = "",
              looked: bool = True) -> None:
        """What waits in a shard now (from a look, or what a take left)."""
        now = time.monotonic()
        if shard not in self.look_at:
            return
        if looked:  # spread: not 24 looks at one moment
            self.look_at[shard] = now + IDLE * random.uniform(0.5, 1.0)
        if waiting > 0:
            self.waiting[shard] = (waiting, now - max(age_ms, 0) / 1000)  # ids ahead of Redis's clock
        else:
            self.waiting.pop(shard, None)
        if newest:
            self.after[shard] = newest

    def ready_in(self, batch_size: int, interval: float) -> float:
        """Seconds until a batch is ready (0: now; IDLE when nothing waits)."""
        if not self.waiting:
            return IDLE
        if sum(count for count, _ in self.waiting.values()) >= batch_size:
            return 0.0
        oldest = min(since for _, since in self.waiting.values())
        return max(0.0, oldest + interval - time.monotonic())

    def plan(self, batch_size: int) -> list[tuple[int, int]]:
        """(shard, most events to take there), ``batch_size`` in all, from the shards with
        events waiting in turn: each batch starts one shard further, so a busy shard
        cannot starve the others, and a backlog goes in batches of one shard each (one
        take). Layout 1's stream is never mixed with others (its batch is its own)."""
        count = len(self.shards)
        order = [self.shards[(self._take_turn + step) % count] for step in range(count)]
        quotas: list[tuple[int, int]] = []
        left = batch_size
        for shard in order:
            if shard not in self.waiting or left <= 0 or (
                    quotas and LAYOUT1 in (shard, quotas[0][0])):
                continue
            take = min(left, self.waiting[shard][0])
            quotas.append((shard, take))
            left -= take
        if quotas:
            self._take_turn = self.shards.index(quotas[0][0]) + 1
        return quotas

    # ------------------------------------------------------------------ sleeping
    def sleep_ms(self, batch_size: int, interval: float) -> int:
        """How long nothing is ready (at least 1 ms, at most RECHECK)."""
        if self.claimable:
            return 0
        now = time.monotonic()
        soonest = min([*self.look_at.values(), *self.due_at.values(),
                       now + self.ready_in(batch_size, interval)], default=now + RECHECK)
        return max(1, min(int((soonest - now) * 1000) + 1, int(RECHECK * 1000)))


class Waker:
    """Sleeps a loop until a timer of its Schedule or a new event in a watched stream."""

    def __init__(self, client: redis.Redis, keys: Keys, stop: threading.Event) -> None:
        self.client, self.keys, self.stop = client, keys, stop
        self.blocking = not is_cluster(client) or hash_tag(keys.prefix) is not None

    def sleep(self, schedule: Schedule, batch_size: int, interval: float) -> None:
        ms = schedule.sleep_ms(batch_size, interval)
        watched = {s: after for s, after in schedule.after.items() if s in schedule.look_at}
        if not watched:
            self.stop.wait(ms / 1000)
            return
        if self.blocking:
            streams = {self.keys.events(s): after for s, after in watched.items()}
            reply = self.client.xread(streams, count=1, block=min(ms, BLOCK_MS))  # type: ignore[arg-type]
            by_stream = {self.keys.events(s): s for s in watched}
            for stream in _streams_of(reply):
                schedule.look_now(by_stream[stream])
            return
        if self.stop.wait(min(ms / 1000, POLL)):
            return
        for shard in self.newer(watched):
            schedule.look_now(shard)

    def newer(self, watched: dict[int, str]) -> list[int]:
        """The shards whose stream has an entry after the id given for it (one round trip)."""
        shards = list(watched)
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.xrevrange(self.keys.events(shard), count=1)
        return [shard for shard, newest in zip(shards, pipe.execute())
                if newest and _order(reply_text(newest[0][0])) > _order(watched[shard])]


def _streams_of(reply: Any) -> Iterable[str]:
    """Stream names of an XREAD reply (RESP2 list or RESP3 dict)."""
    items = reply.keys() if isinstance(reply, dict) else (item[0] for item in reply or ())
    return (reply_text(name) for name in items)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
