"""Every Redis key and name the webhooks use, in one place (``p`` = the key prefix).

``{p}events``            the events stream (written by the redirector); one consumer group
                         ``wh:<id>`` per webhook, so each target reads at its own pace
``{p}wh:ids``            set of webhook ids
``{p}wh:<id>``           the webhook definition (JSON)
``{p}wh:<id>:batches``   hash batch id -> batch record (JSON: stream ids, attempts ...)
``{p}wh:<id>:due``       sorted set batch id -> when it may be (re)tried, ms; a batch being
                         sent sits here with its lease expiry, so a dead worker's batch
                         comes back by itself
``{p}wh:<id>:log``       stream, one entry per attempt, trimmed to the status retention
``{p}wh:dead``           the dead-letter stream (all webhooks), one entry per parked batch
On Redis Cluster give the prefix a hash tag (``{engage}:``): scripts touch several keys.
"""
from __future__ import annotations

from dataclasses import dataclass

from engage.store import keys

CONSUMER = "engage"  # one name for every worker: batch records, not the PEL, say who sends


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def events(self) -> str:
        return keys.events(self.prefix)

    @property
    def ids(self) -> str:
        return keys.webhook_ids(self.prefix)

    @property
    def dead(self) -> str:
        return keys.webhook_dead(self.prefix)

    def hook(self, hook_id: str) -> str:
        return keys.webhook(self.prefix, hook_id)

    def batches(self, hook_id: str) -> str:
        return keys.webhook_batches(self.prefix, hook_id)

    def due(self, hook_id: str) -> str:
        return keys.webhook_due(self.prefix, hook_id)

    def log(self, hook_id: str) -> str:
        return keys.webhook_log(self.prefix, hook_id)

    @staticmethod
    def group(hook_id: str) -> str:
        return f"wh:{hook_id}"
