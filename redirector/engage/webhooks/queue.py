"""The durable batch queue of one webhook: look, take new events, claim due retries, settle.

The queue has one part per shard (engage.webhooks.keys): a record lives in one shard's
keys and every script touches one slot (the scripts: engage.webhooks.lua). A batch lives
in the shard of its first events; the events it takes from other shards are recorded
as parts beside their streams (engage.webhooks.assemble says in which order). Reading
events from the webhook's consumer group and recording them is one script, so an entry
is pending only while a record holds it: a worker killed at any point loses nothing. A
batch being sent is leased (its due time pushed past the send's worst case); if the
worker dies, the lease runs out and any worker retries it. Events are acknowledged
(XACK) only when their batch got a 2xx, or when it is parked in the dead-letter stream.
Times are Redis server time, so workers on several hosts agree. Delivery is at least
once: a worker that outlives its lease may send a batch another worker sends again.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from engage.store import keys as store_keys
from engage.store.redisconn import queue_script, reply_text
from engage.webhooks import lua
from engage.webhooks.keys import Keys


@dataclass(frozen=True)
class Batch:
    """A batch (``home`` None) or a part of one (``home``: the batch's shard)."""

    id: str
    shard: int
    ids: tuple[str, ...]
    size: int
    attempts: int
    created_ms: int
    lease: str
    body: bytes | None = None  # replayed from the dead-letter stream: sent as it is
    parts: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # other shards' ids
    plan: tuple[int, ...] = ()  # shards whose parts are not yet sealed in
    home: int | None = None

    @classmethod
    def from_record(cls, shard: int, batch_id: str | bytes, raw: str | bytes) -> Batch:
        data: dict[str, Any] = json.loads(raw)
        body, home = data.get("body"), data.get("home")
        return cls(reply_text(batch_id), shard, tuple(str(data.get("ids") or "").split()),
                   int(data.get("size", 0)), int(data.get("attempts", 0)),
                   int(data.get("created", 0)), str(data.get("lease", "")),
                   body.encode("utf-8") if isinstance(body, str) else None,
                   {int(s): tuple(str(ids).split()) for s, ids in (data.get("parts") or {}).items()},
                   tuple(int(s) for s in str(data.get("plan") or "").split()),
                   None if home is None else int(home))

    def entries(self) -> list[tuple[int, str]]:
        """(shard, stream id) of every event, this shard's first."""
        return [(self.shard, i) for i in self.ids] + [
            (shard, i) for shard, ids in self.parts.items() for i in ids]

    def all_ids(self) -> str:
        """Every stream id, for a dead letter: this shard's bare, the parts' as ``tag:id``."""
        return " ".join([*self.ids, *(f"{store_keys.SHARD_TAGS[s]}:{i}"
                                       for s, ids in self.parts.items() for i in ids)])


@dataclass(frozen=True)
class Backlog:
    """A shard's waiting events, as one look saw them (age: of the oldest, ms)."""

    waiting: int
    age_ms: int
    newest: str


@dataclass(frozen=True)
class Taken:
    batch: Batch
    left: Backlog  # what still waits in that shard (newest unknown: "")


class Missing:
    """The webhook's consumer group is gone (deleted webhook, or a flushed stream)."""


@dataclass(frozen=True)
class Waiting:
    """No retry due now: the next in ``ms`` (-1: none)."""

    ms: int


def new_batch_id() -> str:
    """SparkPost's batch ids are opaque strings; ours are 128 random bits in hex."""
    return secrets.token_hex(16)


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, redis.ResponseError) and "no such key" in str(exc)


class BatchQueue:
    """The queue of one webhook, over the shards (connection passed in)."""

    def __init__(self, client: redis.Redis, keys: Keys, hook_id: str) -> None:
        self.client, self.keys, self.hook_id = client, keys, hook_id
        self.group = keys.group(hook_id)
        self._scripts = {name: client.register_script(getattr(lua, name))
                         for name in ("PEEK", "TAKE", "CLAIM", "SEAL", "PART", "SUCCEED", "FAIL")}

    def _shard_keys(self, shard: int) -> list[str]:
        return [self.keys.events(shard), self.keys.due(self.hook_id, shard),
                self.keys.batches(self.hook_id, shard)]

    def _pipelined(self, calls: Sequence[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Several scripts (each on one shard) in one round trip; errors come back as values."""
        pipe = self.client.pipeline(transaction=False)
        for name, script_keys, args in calls:
            queue_script(self._scripts[name], pipe, script_keys, args)
        return pipe.execute(raise_on_error=False) if calls else []

    # ------------------------------------------------------------------ new events
    def peek(self, shards: Sequence[int], most: int) -> dict[int, Backlog | Missing]:
        """What waits in each shard's stream for this webhook (one round trip, read only)."""
        replies = self._pipelined([("PEEK", [self.keys.events(s)], [self.group, most])
                                   for s in shards])
        out: dict[int, Backlog | Missing] = {}
        for shard, reply in zip(shards, replies):
            if isinstance(reply, Exception):
                if not _missing(reply):
                    raise reply
                out[shard] = Missing()
            elif reply[0] == -1:
                out[shard] = Missing()
            else:
                out[shard] = Backlog(int(reply[1]), int(reply[2]), reply_text(reply[3]))
        return out

    def take(self, shard: int, types: Sequence[str], most: int, lease_ms: int,
             plan: Sequence[int] = ()) -> Taken | Missing | None:
        """A new batch of up to ``most`` of the shard's waiting events, leased to us, that
        will also take the events of the shards in ``plan`` (engage.webhooks.assemble);
        Missing (no stream or no consumer group); None when no event of ours waited."""
        batch_id = new_batch_id()
        args: list[str | int] = [self.group, most, batch_id, lease_ms, batch_id, ",".join(types),
                " ".join(map(str, plan)), ""]
        try:
            reply = self._scripts["TAKE"](keys=self._shard_keys(shard), args=args)
        except redis.ResponseError as exc:
            reply = exc
        return self._taken(shard, reply)

    def take_parts(self, batch: Batch, types: Sequence[str], quota: Mapping[int, int],
                   check_ms: int) -> dict[int, Taken | Missing | None]:
        """Per shard of ``quota``, a part of ``batch`` of up to that many events (one round
        trip); a part is checked ``check_ms`` later (engage.webhooks.assemble)."""
        shards = list(quota)
        replies = self._pipelined([
            ("TAKE", self._shard_keys(s), [self.group, quota[s], batch.id, check_ms, batch.lease,
                                           ",".join(types), "", str(batch.shard)])
            for s in shards])
        return {shard: self._taken(shard, reply) for shard, reply in zip(shards, replies)}

    @staticmethod
    def _taken(shard: int, reply: Any) -> Taken | Missing | None:
        if isinstance(reply, Exception):
            if not _missing(reply):
                raise reply
            return Missing()
        if reply[0] == -1:
            return Missing()
        if reply[0] == 2:
            return None
        return Taken(Batch.from_record(shard, reply[1], reply[2]),
                     Backlog(int(reply[3]), int(reply[4]), ""))

    def parts_of(self, batch: Batch) -> dict[int, Batch]:
        """The parts of an unsealed batch that were taken (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for shard in batch.plan:
            pipe.hget(self.keys.batches(self.hook_id, shard), batch.id)
        found = {shard: Batch.from_record(shard, batch.id, raw)
                 for shard, raw in zip(batch.plan, pipe.execute()) if raw is not None}
        return {shard: part for shard, part in found.items() if part.home == batch.shard}

    def seal(self, batch: Batch, parts: Mapping[int, Batch], lease_ms: int) -> Batch | None:
        """The batch with its parts fixed for good and its lease renewed; None: lease lost."""
        ids = {str(shard): " ".join(part.ids) for shard, part in parts.items()}
        size = len(batch.ids) + sum(len(part.ids) for part in parts.values())
        raw = self._scripts["SEAL"](keys=self._shard_keys(batch.shard)[1:],
                                    args=[batch.id, batch.lease, json.dumps(ids), size, lease_ms])
        return Batch.from_record(batch.shard, batch.id, raw) if raw else None

    # ------------------------------------------------------------------ retries
    def next_due(self, shards: Sequence[int]) -> dict[int, int]:
        """Per shard, ms until its earliest retry is due (0: now; -1: none), in one round
        trip, read only: claim_due then leases one batch of a shard found due."""
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.zrange(self.keys.due(self.hook_id, shard), 0, 0, withscores=True)
        now_ms = time.time() * 1000  # claim_due checks again with Redis time
        heads = cast("list[list[tuple[bytes, float]]]", pipe.execute())
        return {shard: max(0, int(head[0][1] - now_ms)) if head else -1
                for shard, head in zip(shards, heads)}

    def claim_due(self, shard: int, lease_ms: int) -> Batch | Waiting:
        """The shard's earliest due batch or part (leased to us), or how long until one is."""
        token = new_batch_id()
        reply = self._scripts["CLAIM"](keys=self._shard_keys(shard)[1:], args=[lease_ms, token])
        if reply[0] == 0:
            return Waiting(int(reply[1]))
        return Batch.from_record(shard, reply[1], reply[2])

    def holder(self, part: Batch) -> tuple[Batch | None, float]:
        """A part's batch (None: gone) and when that is due next (ms, Redis time)."""
        assert part.home is not None
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.batches(self.hook_id, part.home), part.id)
        pipe.zscore(self.keys.due(self.hook_id, part.home), part.id)
        raw, due = pipe.execute()
        found = None if raw is None else Batch.from_record(part.home, part.id, raw)
        return found, float(due or 0)

    def recheck_part(self, part: Batch, delay_ms: int) -> bool:
        """Its batch holds it: check again in ``delay_ms``."""
        return bool(self._scripts["PART"](keys=self._shard_keys(part.shard)[1:],
                                          args=[part.id, part.lease, delay_ms, ""]))

    def adopt_part(self, part: Batch) -> bool:
        """Its batch is gone or sealed without it: it becomes a batch of its own, due now,
        under a new id (the old id's batch was sent without these events)."""
        return bool(self._scripts["PART"](keys=self._shard_keys(part.shard)[1:],
                                          args=[part.id, part.lease, "", new_batch_id()]))

    # ------------------------------------------------------------------ settling
    def succeed(self, batch: Batch) -> bool:
        """Acknowledge and drop the batch: its parts first, then the batch itself."""
        self.settle_parts(batch)
        return bool(self._scripts["SUCCEED"](keys=self._shard_keys(batch.shard),
                                             args=[self.group, batch.id]))

    def settle_parts(self, batch: Batch) -> None:
        self._pipelined([("SUCCEED", self._shard_keys(s), [self.group, batch.id])
                         for s in batch.parts])

    def fail(self, batch: Batch, attempts: int, delay_ms: int, window_ms: int, code: int,
             error: str, body: bytes) -> str:
        """'retry', 'dead' or 'lost' (see lua.FAIL); a parked batch's parts are settled
        after it (a crash between leaves them to be sent again: at least once)."""
        keys = self._shard_keys(batch.shard) + [self.keys.dead(batch.shard)]
        args: list[str | int | bytes] = [self.group, batch.id, batch.lease, attempts, delay_ms,
                                         window_ms, code, error[:500], body, self.hook_id,
                                         batch.all_ids()]
        outcome = reply_text(self._scripts["FAIL"](keys=keys, args=args))
        if outcome == "dead":
            self.settle_parts(batch)
        return outcome

    def ensure_group(self, shard: int) -> None:
        """Create the consumer group at the end of the shard's stream (new events only)."""
        try:
            self.client.xgroup_create(self.keys.events(shard), self.group, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
