"""Webhook definitions, batch status and dead letters in Redis: what the CLI manages.

A new webhook gets its consumer group at the end of every shard's events stream: it
receives events from its creation on (as at SparkPost). Reactivating a webhook moves the
groups to the end again: events that happened while it was inactive are not sent.
Deleting one removes its groups, queues and status from every shard. Dead letters are
kept per shard and listed merged, newest first; replaying one queues its stored body
again, in its shard, under the same batch id, due at once, with a fresh retry window.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from engage.store.keys import shard_ids
from engage.store.redisconn import readable_shards, stream_entries
from engage.webhooks import config
from engage.webhooks.config import Webhook
from engage.webhooks.keys import LAYOUT1, Keys, dead_id, parse_dead_id
from engage.webhooks.queue import Batch

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT


# XGROUP's errors for a group that is there already, or a stream or group that is not
_ABSENT_OR_THERE = ("BUSYGROUP", "requires the key to exist", "no such key", "NOGROUP")


class NotFound(KeyError):
    """No such webhook or dead letter."""


@dataclass(frozen=True)
class Attempt:
    """One line of batch status (kept for the status retention, 24 h by default)."""

    when: float
    batch: str
    size: int
    attempt: int
    code: int
    latency_ms: int
    outcome: str  # delivered, retry, dead, lost (lease taken over), empty (events expired)
    error: str = ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WebhookStore:
    def __init__(self, client: redis.Redis, prefix: str,
                 status_retention: float = 86400) -> None:
        self.client, self.keys, self.retention = client, Keys(prefix), status_retention

    # ----------------------------------------------------------------- definitions
    def layout1(self) -> bool:
        """Whether layout 1's keys may hold webhook data. ``engage migrate-layout`` leaves
        its stream and queues to drain (read while they exist, whatever the layout
        marker); a cluster whose prefix has no hash tag never had them (layout 1 needed
        one there, and its keys would span slots)."""
        return LAYOUT1 in self.shards()

    def shards(self) -> tuple[int, ...]:
        """The shards to read (engage.store.redisconn.readable_shards)."""
        return readable_shards(self.client, self.keys.prefix)

    def create(self, hook: Webhook) -> None:
        """Its groups first (at the end of every shard's stream), then the definition: a
        worker starts its loop when it sees the definition."""
        self._set_groups(hook.id, create=True)
        pipe = self.client.pipeline(transaction=False)  # unsharded keys: not one slot
        pipe.set(self.keys.hook(hook.id), hook.to_json())
        pipe.sadd(self.keys.ids, hook.id)
        pipe.execute()

    def _set_groups(self, hook_id: str, create: bool) -> None:
        """Create the webhook's group at the end of every shard's stream (with it), or move
        it there (reactivation; layout 1's too, where it has one)."""
        pipe = self.client.pipeline(transaction=False)
        group = Keys.group(hook_id)
        for shard in shard_ids():
            pipe.xgroup_create(self.keys.events(shard), group, id="$", mkstream=True)
            if not create:
                pipe.xgroup_setid(self.keys.events(shard), group, id="$")
        if not create and self.layout1():
            pipe.xgroup_setid(self.keys.events(LAYOUT1), group, id="$")
        for reply in pipe.execute(raise_on_error=False):
            text = str(reply) if isinstance(reply, Exception) else ""
            if text and not any(ok in text for ok in _ABSENT_OR_THERE):
                raise reply

    def get(self, hook_id: str) -> Webhook:
        raw = self.client.get(self.keys.hook(hook_id))
        if raw is None:
            raise NotFound(hook_id)
        return config.from_json(raw)

    def all(self) -> list[Webhook]:
        ids = sorted(_text(i) for i in self.client.smembers(self.keys.ids))
        pipe = self.client.pipeline(transaction=False)  # not MGET: one slot only on a cluster
        for hook_id in ids:
            pipe.get(self.keys.hook(hook_id))
        raws = pipe.execute() if ids else []
        return [config.from_json(raw) for raw in raws if raw is not None]

    def update(self, hook: Webhook, previous: Webhook) -> None:
        self.client.set(self.keys.hook(hook.id), hook.to_json())
        if hook.active and not previous.active:
            self._set_groups(hook.id, create=False)

    def delete(self, hook_id: str) -> None:
        """The definition first: a worker loop that finds a group gone recreates it only
        while the definition is there (and looks again after), so none is left behind."""
        self.get(hook_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.hook(hook_id))
        pipe.srem(self.keys.ids, hook_id)
        pipe.execute()
        self.drop_groups(hook_id)
        self.client.delete(self.keys.log(hook_id))  # last: a send in flight may log it

    def drop_groups(self, hook_id: str) -> None:
        """Remove the webhook's groups, batches and retries from every shard (layout 1's too)."""
        pipe = self.client.pipeline(transaction=False)
        for shard in self.shards():
            pipe.xgroup_destroy(self.keys.events(shard), Keys.group(hook_id))
            pipe.delete(self.keys.batches(hook_id, shard))  # one key a DEL: a cluster's pipeline
            pipe.delete(self.keys.due(hook_id, shard))
        pipe.execute(raise_on_error=False)  # a stream or group may be gone already

    # ----------------------------------------------------------------- status
    def record(self, hook_id: str, attempt: Attempt) -> None:
        fields: dict[FieldT, EncodableT] = {"batch": attempt.batch, "size": attempt.size, "attempt": attempt.attempt,
                  "code": attempt.code, "latency_ms": attempt.latency_ms,
                  "outcome": attempt.outcome, "error": attempt.error[:300]}
        cutoff = int((time.time() - self.retention) * 1000)
        self.client.xadd(self.keys.log(hook_id), fields,
                         minid=cutoff, approximate=True)

    def attempts(self, hook_id: str, limit: int = 50) -> list[Attempt]:
        """The newest attempts first, only those within the status retention."""
        cutoff = int((time.time() - self.retention) * 1000)
        entries = stream_entries(self.client.xrevrange(self.keys.log(hook_id), "+", cutoff, count=limit))
        return [_attempt(entry_id, fields) for entry_id, fields in entries]

    def pending(self, hook_id: str) -> list[tuple[Batch, float]]:
        """Batches not yet delivered, of every shard, with the time of their next attempt,
        soonest first (not their parts in other shards: engage.webhooks.assemble)."""
        every = self.shards()
        pipe = self.client.pipeline(transaction=False)
        for shard in every:
            pipe.zrange(self.keys.due(hook_id, shard), 0, -1, withscores=True)
        # (member, score) pairs: withscores' reply, one of the shapes redis-py's type allows
        dues = cast("list[list[tuple[bytes, float]]]", pipe.execute())
        waiting = [(shard, due) for shard, due in zip(every, dues) if due]
        pipe = self.client.pipeline(transaction=False)
        for shard, due in waiting:
            pipe.hmget(self.keys.batches(hook_id, shard), [member for member, _ in due])
        found = [(Batch.from_record(shard, member, raw), score / 1000)
                 for (shard, due), raws in zip(waiting, pipe.execute() if waiting else [])
                 for (member, score), raw in zip(due, raws) if raw is not None]
        return sorted([(batch, due) for batch, due in found if batch.home is None],
                      key=lambda pair: pair[1])  # a part is shown in its batch's size

    # ----------------------------------------------------------------- dead letters
    def dead_letters(self, hook_id: str | None = None) -> list[dict[str, Any]]:
        """Every shard's dead letters (of one webhook), newest first; ``id`` is the public
        id (engage.webhooks.keys.dead_id), ``parked`` the unix time it was parked."""
        every = self.shards()
        pipe = self.client.pipeline(transaction=False)
        for shard in every:
            pipe.xrange(self.keys.dead(shard))
        found: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
        for shard, entries in zip(every, pipe.execute()):
            for entry_id, fields in stream_entries(entries):
                item = {_text(k): _text(v) for k, v in fields.items()}
                if hook_id is None or item["webhook"] == hook_id:
                    entry = _text(entry_id)
                    ms, _, seq = entry.partition("-")
                    item.update(id=dead_id(shard, entry), parked=str(int(ms) / 1000))
                    found.append(((int(ms), int(seq), shard), item))
        found.sort(key=lambda pair: pair[0], reverse=True)
        return [item for _, item in found]

    def replay(self, public_id: str) -> str:
        """Queue a dead letter again (due now, in its shard); returns its batch id.
        NotFound if absent."""
        shard, entry_id = self._dead_entry(public_id)
        found = stream_entries(self.client.xrange(self.keys.dead(shard), entry_id, entry_id))
        if not found:
            raise NotFound(public_id)
        item = {_text(k): _text(v) for k, v in found[0][1].items()}
        hook_id, batch_id = item["webhook"], item["batch"]
        self.get(hook_id)
        seconds, micros = self.client.time()  # Redis time, as the queue scripts use
        now_ms = seconds * 1000 + micros // 1000
        record = json.dumps({"ids": "", "size": int(item["size"]), "created": now_ms,
                             "attempts": 0, "lease": "", "code": 0, "body": item["body"]}, allow_nan=False)
        pipe = self.client.pipeline(transaction=True)  # one shard: one slot
        pipe.hset(self.keys.batches(hook_id, shard), batch_id, record)
        pipe.zadd(self.keys.due(hook_id, shard), {batch_id: now_ms})
        pipe.xdel(self.keys.dead(shard), entry_id)
        pipe.execute()
        return batch_id

    def discard(self, public_id: str) -> None:
        """Drop a dead letter for good. NotFound if absent."""
        shard, entry_id = self._dead_entry(public_id)
        if not self.client.xdel(self.keys.dead(shard), entry_id):
            raise NotFound(public_id)

    @staticmethod
    def _dead_entry(public_id: str) -> tuple[int, str]:
        found = parse_dead_id(public_id)
        if found is None:
            raise NotFound(public_id)
        return found


def _attempt(entry_id: Any, fields: dict[Any, Any]) -> Attempt:
    item = {_text(k): _text(v) for k, v in fields.items()}
    when = int(_text(entry_id).partition("-")[0]) / 1000
    return Attempt(when, item["batch"], int(item["size"]), int(item["attempt"]), int(item["code"]),
                   int(item["latency_ms"]), item["outcome"], item.get("error", ""))
