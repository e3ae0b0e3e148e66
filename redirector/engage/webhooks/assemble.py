"""Batches that mix shards, built from one-slot steps (each a script of engage.webhooks.lua)
in an order that loses nothing whatever step a worker dies at.

1. The batch is recorded in the shard of its oldest events (its home), with those
   events and the *plan*: the other shards it will take from. Leased, as any batch.
2. One part per planned shard (one pipelined round trip): each script reads that
   shard's events from the webhook's group and records them as a part naming the home.
   A part is due for a check one lease later.
3. The batch is *sealed*: the parts found are written into it (their stream ids), the
   plan dropped, the lease renewed, if the lease is still ours. Only then is it sent:
   what a batch id holds is fixed before its first attempt (receivers dedupe by it).
4. After a 2xx the parts are acknowledged and dropped, then the batch; after the last
   failure the batch is parked (dead letter with every event), then its parts dropped.

An event is pending in its group only while a record (batch or part) holds it. A
worker dying after 1 leaves a batch whose lease runs out: the next worker reads the
parts that exist and seals them (steps 3-4). A part whose batch is gone, or was sealed
without it (a worker that outlived its lease took it late), becomes a batch of its own
when its check comes, under a new id; while its batch holds it, its check is put off
past the batch's next attempt. The settling order means a part outlives its batch only
by a crash in step 4: then it is sent again, at least once.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

from engage.webhooks.queue import Batch, BatchQueue, Missing, Taken

Outcome = dict[int, Taken | Missing | None]  # what each shard's take gave


def build(queue: BatchQueue, quotas: Sequence[tuple[int, int]], types: Sequence[str],
          lease_ms: int) -> tuple[Batch | None, Outcome]:
    """A new sealed batch of the shards' events, at most ``quota`` from each, the first
    shard that gives some being its home (None: none did, or the lease was lost)."""
    seen: Outcome = {}
    home: Batch | None = None
    remaining = list(quotas)
    while remaining and home is None:
        shard, most = remaining.pop(0)
        got = queue.take(shard, types, most, lease_ms, plan=[s for s, _ in remaining])
        seen[shard] = got
        home = got.batch if isinstance(got, Taken) else None
    if home is None or not home.plan:
        return home, seen
    taken = queue.take_parts(home, types, dict(remaining), lease_ms)
    seen.update(taken)
    parts = {shard: got.batch for shard, got in taken.items() if isinstance(got, Taken)}
    return queue.seal(home, parts, lease_ms), seen


def ready(queue: BatchQueue, claimed: Batch, lease_ms: int) -> Batch | None:
    """A claimed record made ready to send: a batch (sealed first if its worker died
    before step 3); None for a part (checked: put off, or made a batch of its own) or a
    batch whose lease was lost meanwhile."""
    if claimed.home is not None:
        check(queue, claimed, lease_ms)
        return None
    if claimed.plan:
        return queue.seal(claimed, queue.parts_of(claimed), lease_ms)
    return claimed


def check(queue: BatchQueue, part: Batch, lease_ms: int) -> bool:
    """True when the part's batch still holds it (its check put off until after the
    batch's next attempt); False when it became a batch of its own."""
    holder, due_ms = queue.holder(part)
    if holder is not None and (part.shard in holder.plan or part.shard in holder.parts):
        wait = max(0, int(due_ms - time.time() * 1000))
        queue.recheck_part(part, wait + lease_ms)
        return True
    queue.adopt_part(part)
    return False
