"""Which shard a webhook's loop serves next, and how long it may sleep (engage.webhooks.worker).

A webhook's events are in 24 shard streams (and layout 1's, while it has the group). Per
shard the loop knows when a take may next give a batch and when a retry is next due,
both learnt from the queue's answers; retries are looked for every second (one pipelined
round trip), a shard with no new entry asked again after IDLE seconds. Ready
shards are served in turn, one batch each (round robin), so a busy shard cannot starve
the others. When nothing is ready the loop sleeps until the earliest of those times and
wakes early on a new event in any of its streams: one blocking XREAD over all of them
on one Redis (or a cluster whose prefix puts every key in one slot); on a Redis Cluster
whose shards are spread over slots, where one XREAD cannot span them, it polls the
streams' newest ids every POLL seconds, in one pipelined round trip.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from engage.store.redisconn import hash_tag, is_cluster, reply_text
from engage.webhooks.keys import Keys

RECHECK = 1.0  # seconds: the longest a shard's retries go unasked (one pipelined peek)
IDLE = 10.0  # seconds between takes on a shard with nothing new (a new entry wakes us)
BLOCK_MS = 1000  # longest XREAD block (under the connection's socket timeout)
POLL = 0.1  # seconds between polls of the streams where one XREAD cannot watch them all


class Schedule:
    """Per-shard timers of one webhook's loop (monotonic seconds); not thread-safe."""

    def __init__(self, shards: Sequence[int]) -> None:
        now = time.monotonic()
        self.shards = list(shards)
        self.take_at = dict.fromkeys(self.shards, now)  # a shard without a stream is left out
        self.due_at = dict.fromkeys(self.shards, now)
        self.claimable: set[int] = set()  # a retry is due there now
        self.after: dict[int, str] = {}  # the newest stream id seen: wake on later ones
        self.partial: dict[int, float] = {}  # events wait there until this batch interval end
        self.flushing: set[int] = set()  # take there now, whatever the events' age
        self._turn = {"take": 0, "claim": 0}

    def drop_stream(self, shard: int) -> None:
        """Its stream or group is gone: no more takes there (retries still come)."""
        self.take_at.pop(shard, None)
        self.after.pop(shard, None)
        self.partial.pop(shard, None)
        self.flushing.discard(shard)

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
        return self._pick("claim", lambda s: s in self.claimable)

    # ------------------------------------------------------------------ new events
    def take_now(self, shard: int) -> None:
        """Look again at once (a batch was taken: more may wait; or a new entry came)."""
        if shard in self.take_at:
            self.take_at[shard] = time.monotonic()
        self.partial.pop(shard, None)
        self.flushing.discard(shard)

    def take_in(self, shard: int, ms: int, after: str | None) -> None:
        """Nothing to take before ``ms`` (-1: before a new entry after ``after``); with
        ``ms`` >= 0, events wait there for the batch interval to end."""
        self.flushing.discard(shard)
        if shard not in self.take_at:
            return
        now = time.monotonic()
        idle = IDLE * random.uniform(0.5, 1.0)  # spread: not 24 takes at one moment
        self.take_at[shard] = now + (idle if ms < 0 else min(max(ms, 1) / 1000, RECHECK))
        if ms >= 0:
            self.partial[shard] = now + ms / 1000
        else:
            self.partial.pop(shard, None)
        if after:
            self.after[shard] = after

    def pick_take(self) -> int | None:
        """The next shard to take from. When a shard's batch interval ends, every shard
        with events waiting is flushed with it (``flushing``: take them whatever their
        age), as one stream was: a webhook's partial batches go out together at most once
        per interval, and an event waits at most the interval, not a shard's whole one."""
        now = time.monotonic()
        shard = self._pick("take", lambda s: self.take_at.get(s, now + 1) <= now)
        if shard is not None and self.partial.get(shard, now + 1) <= now:
            self.flushing.update(self.partial)
            for waiting in self.partial:
                self.take_at[waiting] = now
            self.partial.clear()
        return shard

    def _pick(self, kind: str, ready: Any) -> int | None:
        """The first ready shard from where the last pick of this kind stopped."""
        count = len(self.shards)
        start = self._turn[kind]
        for step in range(count):
            index = (start + step) % count
            if ready(self.shards[index]):
                self._turn[kind] = index + 1
                return self.shards[index]
        return None

    # ------------------------------------------------------------------ sleeping
    def sleep_ms(self) -> int:
        """How long nothing is ready (at least 1 ms, at most RECHECK)."""
        if self.claimable:
            return 0
        soonest = min([*self.take_at.values(), *self.due_at.values()],
                      default=time.monotonic() + RECHECK)
        return max(1, min(int((soonest - time.monotonic()) * 1000) + 1, int(RECHECK * 1000)))


class Waker:
    """Sleeps a loop until a timer of its Schedule or a new event in a watched stream."""

    def __init__(self, client: redis.Redis, keys: Keys, stop: threading.Event) -> None:
        self.client, self.keys, self.stop = client, keys, stop
        self.blocking = not is_cluster(client) or hash_tag(keys.prefix) is not None

    def sleep(self, schedule: Schedule) -> None:
        ms = schedule.sleep_ms()
        watched = {s: after for s, after in schedule.after.items() if s in schedule.take_at}
        if not watched:
            self.stop.wait(ms / 1000)
            return
        if self.blocking:
            streams = {self.keys.events(s): after for s, after in watched.items()}
            reply = self.client.xread(streams, count=1, block=min(ms, BLOCK_MS))  # type: ignore[arg-type]
            by_stream = {self.keys.events(s): s for s in watched}
            for stream in _streams_of(reply):
                schedule.take_now(by_stream[stream])
            return
        if self.stop.wait(min(ms / 1000, POLL)):
            return
        for shard in self.newer(watched):
            schedule.take_now(shard)

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
