"""Webhook definitions, batch status and dead letters in Redis: what the CLI manages.

A new webhook gets its consumer group at the end of the events stream: it receives
events from its creation on (as at SparkPost). Reactivating a webhook moves the group to
the end again: events that happened while it was inactive are not sent. Deleting one
removes its group, queue and status. Replaying a dead letter queues its stored body
again under the same batch id, due at once, with a fresh retry window.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from engage.store.redisconn import stream_entries
from engage.webhooks import config
from engage.webhooks.config import Webhook
from engage.webhooks.keys import Keys
from engage.webhooks.queue import Batch

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT


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
    def create(self, hook: Webhook) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.hook(hook.id), hook.to_json())
        pipe.sadd(self.keys.ids, hook.id)
        pipe.execute()
        try:
            self.client.xgroup_create(self.keys.events, Keys.group(hook.id), id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def get(self, hook_id: str) -> Webhook:
        raw = self.client.get(self.keys.hook(hook_id))
        if raw is None:
            raise NotFound(hook_id)
        return config.from_json(raw)

    def all(self) -> list[Webhook]:
        ids = sorted(_text(i) for i in self.client.smembers(self.keys.ids))
        raws = self.client.mget([self.keys.hook(i) for i in ids]) if ids else []
        return [config.from_json(raw) for raw in raws if raw is not None]

    def update(self, hook: Webhook, previous: Webhook) -> None:
        self.client.set(self.keys.hook(hook.id), hook.to_json())
        if hook.active and not previous.active:
            self.client.xgroup_setid(self.keys.events, Keys.group(hook.id), id="$")

    def delete(self, hook_id: str) -> None:
        self.get(hook_id)
        # One MULTI: a worker loop must never see the group gone while the definition is
        # still there (it would recreate the group of a deleted webhook).
        pipe = self.client.pipeline(transaction=True)
        pipe.xgroup_destroy(self.keys.events, Keys.group(hook_id))
        pipe.delete(self.keys.hook(hook_id), self.keys.batches(hook_id),
                    self.keys.due(hook_id), self.keys.log(hook_id))
        pipe.srem(self.keys.ids, hook_id)
        pipe.execute(raise_on_error=False)  # the stream or group may be gone already

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
        """Batches not yet delivered, with the time of their next attempt, soonest first."""
        # (member, score) pairs: withscores' reply, one of the shapes redis-py's type allows
        due = cast("list[tuple[bytes, float]]",
                   self.client.zrange(self.keys.due(hook_id), 0, -1, withscores=True))
        if not due:
            return []
        raws = self.client.hmget(self.keys.batches(hook_id), [member for member, _ in due])
        return [(Batch.from_record(member, raw), score / 1000)
                for (member, score), raw in zip(due, raws) if raw is not None]

    # ----------------------------------------------------------------- dead letters
    def dead_letters(self, hook_id: str | None = None) -> list[dict[str, Any]]:
        out = []
        for entry_id, fields in stream_entries(self.client.xrange(self.keys.dead)):
            item = {_text(k): _text(v) for k, v in fields.items()}
            if hook_id is None or item["webhook"] == hook_id:
                item["id"] = _text(entry_id)
                out.append(item)
        return out

    def replay(self, dead_id: str) -> str:
        """Queue a dead letter again (due now); returns its batch id. NotFound if absent."""
        found = stream_entries(self.client.xrange(self.keys.dead, dead_id, dead_id))
        if not found:
            raise NotFound(dead_id)
        item = {_text(k): _text(v) for k, v in found[0][1].items()}
        hook_id, batch_id = item["webhook"], item["batch"]
        self.get(hook_id)
        seconds, micros = self.client.time()  # Redis time, as the queue scripts use
        now_ms = seconds * 1000 + micros // 1000
        record = json.dumps({"ids": "", "size": int(item["size"]), "created": now_ms,
                             "attempts": 0, "lease": "", "code": 0, "body": item["body"]}, allow_nan=False)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.batches(hook_id), batch_id, record)
        pipe.zadd(self.keys.due(hook_id), {batch_id: now_ms})
        pipe.xdel(self.keys.dead, dead_id)
        pipe.execute()
        return batch_id


    def discard(self, dead_id: str) -> None:
        """Drop a dead letter for good. NotFound if absent."""
        if not self.client.xdel(self.keys.dead, dead_id):
            raise NotFound(dead_id)


def _attempt(entry_id: Any, fields: dict[Any, Any]) -> Attempt:
    item = {_text(k): _text(v) for k, v in fields.items()}
    when = int(_text(entry_id).partition("-")[0]) / 1000
    return Attempt(when, item["batch"], int(item["size"]), int(item["attempt"]), int(item["code"]),
                   int(item["latency_ms"]), item["outcome"], item.get("error", ""))
