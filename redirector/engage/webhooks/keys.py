"""Every Redis key and name the webhooks use, in one place (``p`` = the key prefix).

Layout 2 (engage.store.keys): the events are spread over 24 virtual shards, ``{s}`` being
a shard's hash tag. Whatever a queue script touches with a shard's stream is in that
shard, so that each script stays in one slot of a Redis Cluster:

``{p}{s}events``            a shard's events stream (written by the redirector); one consumer
                            group ``wh:<id>`` per webhook on each, so each target reads at
                            its own pace
``{p}{s}wh:<id>:batches``   hash batch id -> batch record (JSON: stream ids, attempts ...),
                            or a part of a batch of another shard (engage.webhooks.lua)
``{p}{s}wh:<id>:due``       sorted set batch id -> when it may be (re)tried, ms; a batch being
                            sent sits here with its lease expiry, so a dead worker's batch
                            comes back by itself; a part, when to check on it
``{p}{s}wh:dead``           the shard's dead-letter stream (all webhooks), one entry per
                            parked batch
``{p}wh:ids``               set of webhook ids (unsharded)
``{p}wh:<id>``              the webhook definition (JSON; unsharded)
``{p}wh:<id>:log``          stream, one entry per attempt, trimmed to the status retention
Layout 1's keys (no ``{s}``: ``keys.LAYOUT1``) are read as one more shard until they
drain (``engage migrate-layout`` leaves them): its stream while it has the webhook's
group, its retries and dead letters.
"""
from __future__ import annotations

from dataclasses import dataclass

from engage.store import keys

CONSUMER = "engage"  # one name for every worker: batch records, not the PEL, say who sends
LAYOUT1 = keys.LAYOUT1


@dataclass(frozen=True)
class Keys:
    prefix: str

    def events(self, shard: int) -> str:
        return keys.events(self.prefix, shard)

    @property
    def ids(self) -> str:
        return keys.webhook_ids(self.prefix)

    def dead(self, shard: int) -> str:
        return keys.webhook_dead(self.prefix, shard)

    def hook(self, hook_id: str) -> str:
        return keys.webhook(self.prefix, hook_id)

    def batches(self, hook_id: str, shard: int) -> str:
        return keys.webhook_batches(self.prefix, hook_id, shard)

    def due(self, hook_id: str, shard: int) -> str:
        return keys.webhook_due(self.prefix, hook_id, shard)

    def log(self, hook_id: str) -> str:
        return keys.webhook_log(self.prefix, hook_id)

    @staticmethod
    def group(hook_id: str) -> str:
        return f"wh:{hook_id}"


def dead_id(shard: int, entry_id: str) -> str:
    """The public id of a dead letter: ``<shard tag>:<entry id>``; layout 1's keep their
    bare entry id (as before layout 2)."""
    return entry_id if shard == LAYOUT1 else f"{keys.SHARD_TAGS[shard]}:{entry_id}"


def parse_dead_id(text: str) -> tuple[int, str] | None:
    """(shard, entry id) of a public dead-letter id; None when it is not one."""
    tag, sep, entry_id = text.rpartition(":")
    shard = _SHARD_OF_TAG.get(tag) if sep else LAYOUT1
    ms, dash, seq = entry_id.partition("-")
    if shard is None or not (ms.isdigit() and dash and seq.isdigit()):
        return None
    return shard, entry_id


_SHARD_OF_TAG = {tag: n for n, tag in enumerate(keys.SHARD_TAGS)}
