"""Erasure of one address from the webhook queues (engage.erasure.forget): queued batches
and dead letters lose the address's events, by compare-and-set (engage.erasure.lua), so
the webhook workers can run meanwhile. Batches and dead letters are per (hook, shard),
layout 1's as one more shard; each call touches one shard's keys (one cluster slot)."""
from __future__ import annotations

from typing import Any

import redis

from engage.erasure import lua
from engage.erasure.scrub import Address, filter_body, scrub_batch
from engage.store import keys
from engage.store.redisconn import readable_shards, stream_entries

ATTEMPTS = 5  # compare-and-set retries of one value changed under our feet


def text_of(value: str | bytes) -> str:
    """A Redis reply as text; bytes that are not UTF-8 survive the round trip."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class WebhookEraser:
    """The webhook part of a forget under one key prefix; the connection is passed in."""

    def __init__(self, client: redis.Redis, prefix: str, chunk: int = 1000) -> None:
        self.client, self.prefix, self.chunk = client, prefix, chunk
        self._batch_if = client.register_script(lua.BATCH_IF_LUA)
        self._dead_if = client.register_script(lua.DEAD_IF_LUA)

    def erase(self, address: Address, deleted: dict[int, set[str]]) -> tuple[int, dict[int, int]]:
        """(webhook batches rewritten or dropped, dead letters rewritten or dropped by shard)
        in every shard and layout 1; ``deleted``: the stream ids of the events the forget
        deleted, by shard (a shard's batches and dead letters name its stream's ids)."""
        batches = 0
        hook_ids = sorted(text_of(i) for i in self.client.smembers(keys.webhook_ids(self.prefix)))
        dead: dict[int, int] = {}
        # a dead letter of a batch that mixed shards names the others' ids as tag:id
        tagged = {f"{keys.SHARD_TAGS[s]}:{i}" for s, ids in deleted.items() if s != keys.LAYOUT1
                  for i in ids}
        for shard in readable_shards(self.client, self.prefix):
            for hook_id in hook_ids:
                batches += self._batches(hook_id, shard, address)
            changed = self._dead_letters(shard, address, deleted.get(shard, set()) | tagged)
            if changed:
                dead[shard] = changed
        return batches, dead

    def _batches(self, hook_id: str, shard: int, address: Address) -> int:
        """Queued batches carry stream ids (deleted events are skipped when sent) or, when
        replayed from a dead letter, their whole body: that body loses the events."""
        batches = keys.webhook_batches(self.prefix, hook_id, shard)
        due = keys.webhook_due(self.prefix, hook_id, shard)
        raw: bytes | str | None  # a record, until HGET finds it gone
        changed = 0
        for batch_id, raw in self.client.hgetall(batches).items():
            for _ in range(ATTEMPTS):
                new, _ = scrub_batch(raw, address)
                if new == text_of(raw):
                    break
                if self._batch_if(keys=[batches, due], args=[batch_id, raw, new or ""]):
                    changed += 1
                    break
                raw = self.client.hget(batches, batch_id)
                if raw is None:
                    break
        return changed

    def _dead_letters(self, shard: int, address: Address, deleted: set[str]) -> int:
        """Read ``chunk`` at a time; a rewritten dead letter is appended at the end, where
        it is read again and left (it no longer mentions the address)."""
        stream = keys.webhook_dead(self.prefix, shard)
        changed = 0
        start = "-"
        while True:
            entries = stream_entries(self.client.xrange(stream, start, "+", count=self.chunk))
            if not entries:
                return changed
            start = "(" + text_of(entries[-1][0])
            for entry_id, fields in entries:
                item = {text_of(k): text_of(v) for k, v in fields.items()}
                if not any(address.mentions(value) for value in item.values()):
                    continue
                replacement = _dead_letter_without(item, address, deleted)
                args: list[Any] = [entry_id]
                for name, value in replacement.items():
                    args += [name, value]
                changed += int(self._dead_if(keys=[stream], args=args))


def _dead_letter_without(item: dict[str, str], address: Address,
                         deleted: set[str]) -> dict[str, str]:
    """A dead letter's fields without the address's events ({} when none is left)."""
    out = {name: address.cut(value) for name, value in item.items()}
    body = item.get("body", "")
    try:
        out["body"], kept, _ = filter_body(body, address)
    except ValueError:  # not JSON: nothing of it can be sent without the address
        return {}
    if kept == 0:
        return {}
    out["size"] = str(kept)
    out["ids"] = " ".join(i for i in item.get("ids", "").split() if i not in deleted)
    return out
