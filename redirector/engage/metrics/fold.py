"""Folding closed hours: an hour's 24 shard buckets of a kind (sent, engagement, links)
merged into one folded bucket (engage.store.keys.folded), the shard buckets deleted.
A metrics query then reads one bucket per hour instead of 24, and the folded bucket
holds each field once instead of in nearly every shard.

Which hours can still change. Opens and clicks count in the hour of the event's
``timestamp``, which is the redirector's clock when the request came
(engage.store.trackevent), appended in the same request; sent messages count in their
injection hour (the milter's clock at injection), registered before the milter answers.
So an hour is written for a few seconds after it ends (slow requests, redis-py's resend,
clocks a little apart); later only by a writer stalled for long, ``engage migrate-layout``
(layout 1's buckets into the shards) or ``engage metrics rebuild`` (which writes folded
hours itself, engage.metrics.rebuild). An hour is folded once it ended GRACE ago; a
write that comes later still is never lost: it makes a new shard bucket, which readers
read (engage.metrics.buckets) and the next fold of that hour merges.

The protocol, per shard and kind (scripts: engage.store.scripts.fold). A fold cannot
be atomic: the folded bucket is in one slot, each shard's in another. (1) CLAIM, in the
shard's slot: the bucket is renamed to its folding copy and numbered from the shard's
fold sequence (a copy already there, left by a crash, is taken as it is). (2) MERGE,
in the folded bucket's slot: the copy's counts are added and the shard's mark set to
the number, unless the mark is there already (a second merge of one claim is a no-op).
(3) DROP: the copy is deleted. A crash between steps leaves a copy that the next run
claims again, merges once and drops: nothing lost or counted twice. Readers count a
copy only while its number is above its shard's mark. Runs may overlap (several
workers): each step is decided inside one script.

Bounded: a run folds at most ``max_hours`` hours and starts none after FOLD_SECONDS
(unless ``start`` is given: ``engage metrics fold --from``), each hour in three pipelined
round trips of small scripts (one shard bucket per script: what one shard wrote in one
hour). It
starts at the cursor (engage.store.keys.fold_cursor, or the oldest retained hour) and
moves it past each hour done; hours written after the cursor passed are read right
and folded by ``engage metrics fold --from``. ``engage metrics rebuild`` pauses it.
Who runs it: the webhooks worker, every FOLD_EVERY seconds (engage.webhooks.worker),
and ``engage metrics fold``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from engage.metrics.buckets import run_calls
from engage.store import aggregates, keys
from engage.store.redisconn import reply_text
from engage.store.scripts.fold import CLAIM_LUA, DROP_LUA, MERGE_LUA

log = logging.getLogger(__name__)

HOUR = aggregates.HOUR
GRACE = 3600  # an hour is folded once it ended this long ago
FOLD_EVERY = 60.0  # seconds between the webhooks worker's runs
FOLD_HOURS = 720  # hours per run at most ...
FOLD_SECONDS = 2.0  # ... and no hour started after this long (empty hours take ~3 ms)
TRIES = 3  # folds of one hour in a run while writes keep coming


@dataclass
class FoldReport:
    hours: int = 0  # folded in this run
    buckets: int = 0  # shard buckets merged
    paused: bool = False  # a rebuild runs: nothing done
    next_hour: str = ""  # where the next run starts


def closed_before(now: float) -> int:
    """Hours starting before this are closed: they ended GRACE ago."""
    return int(now - GRACE) // HOUR * HOUR


def fold_hour(client: redis.Redis, prefix: str, hour: str, retention_days: int) -> tuple[int, bool]:
    """Fold every kind of one hour: (shard buckets merged, whether no shard bucket is left)."""
    places = [(kind, shard) for kind in aggregates.KINDS for shard in keys.shard_ids()]
    claim_calls: list[tuple[list[str], list[Any]]] = [
        ([keys.aggregate(prefix, shard, kind, hour), keys.folding(prefix, shard, kind, hour),
          keys.fold_seq(prefix, shard)], []) for kind, shard in places]
    claims = list(run_calls(client, client.register_script(CLAIM_LUA), claim_calls))
    found = [(kind, shard, *_copy(reply[1]))
             for (kind, shard), reply in zip(places, claims) if reply[1]]
    expiry = aggregates.expires_at(hour, retention_days)
    merge_calls = [([keys.folded(prefix, kind, hour)],
                    [shard, seq, expiry, *(item for pair in counts.items() for item in pair)])
                   for kind, shard, seq, counts in found]
    merged = sum(int(reply) for reply in run_calls(
        client, client.register_script(MERGE_LUA), merge_calls))
    drop_calls = [([keys.folding(prefix, shard, kind, hour)], [seq])
                  for kind, shard, seq, _ in found]
    list(run_calls(client, client.register_script(DROP_LUA), drop_calls))
    return merged, not any(int(reply[0]) for reply in claims)


def _copy(flat: list[Any]) -> tuple[str, dict[str, str]]:
    """A folding copy's HGETALL: (its number, its counters)."""
    fields = {reply_text(flat[i]): reply_text(flat[i + 1]) for i in range(0, len(flat), 2)}
    return fields["#"], {name: value for name, value in fields.items() if name[:1] != "#"}


def run(client: redis.Redis, prefix: str, now: float, retention_days: int,
        max_hours: int = FOLD_HOURS, start: int | None = None) -> FoldReport:
    """Fold up to ``max_hours`` closed hours from the cursor (or ``start``, a unix
    hour: the cursor then moves only forward). Raises redis.RedisError / EventError."""
    report = FoldReport()
    if not retention_days:
        return report  # no aggregates are kept
    cursor = keys.fold_cursor(prefix)
    state = {reply_text(k): reply_text(v) for k, v in client.hgetall(cursor).items()}
    oldest = int(now - retention_days * 86400) // HOUR * HOUR
    saved = int(state.get("next") or oldest)
    first = max(oldest, saved if start is None else start // HOUR * HOUR)
    position, deadline = first, time.monotonic() + FOLD_SECONDS
    for hour in range(first, min(closed_before(now), first + max_hours * HOUR), HOUR):
        if float(client.hget(cursor, "paused") or 0) > time.time():
            report.paused = True
            break
        if report.hours and time.monotonic() > deadline and start is None:
            break
        for _ in range(TRIES):
            merged, done = fold_hour(client, prefix, aggregates.hour_of(hour), retention_days)
            report.buckets += merged
            if done:
                break
        report.hours += 1
        position = hour + HOUR
        if position > saved:
            client.hset(cursor, "next", position)
    report.next_hour = aggregates.hour_of(max(position, saved))
    return report


def pause(client: redis.Redis, prefix: str, seconds: float) -> None:
    """Stop folds for ``seconds`` (a rebuild replaces folded hours); ``resume`` ends it."""
    client.hset(keys.fold_cursor(prefix), "paused", time.time() + seconds)


def resume(client: redis.Redis, prefix: str) -> None:
    client.hdel(keys.fold_cursor(prefix), "paused")


class Folder:
    """Runs ``run`` every FOLD_EVERY seconds from a loop that calls ``tick`` often."""

    def __init__(self, client: redis.Redis, prefix: str, retention_days: int) -> None:
        self.client, self.prefix, self.retention_days = client, prefix, retention_days
        self.due = 0.0

    def tick(self, now: float | None = None) -> FoldReport | None:
        now = time.time() if now is None else now
        if now < self.due or not self.retention_days:
            return None
        self.due = now + FOLD_EVERY
        report = run(self.client, self.prefix, now, self.retention_days)
        if report.hours:
            log.info("metrics: folded %d hours (%d shard buckets), next %s", report.hours,
                     report.buckets, report.next_hour)
        return report
