"""``engage-webhooks run``: deliver every active webhook's batches, in the foreground.

One thread per webhook, so a slow or dead target only delays its own batches. Each
thread loops over the shards' streams (engage.webhooks.schedule): send a due retry if
there is one, else, when a batch is ready, take one from the shards with events waiting,
oldest first, so none starves (engage.webhooks.assemble), else sleep until a new event in
any shard or the next retry. Several workers, on
one host or many, may run at once: the queue scripts hand each batch to one of them.
The webhook list is re-read every second; SIGTERM/SIGINT stop after the current POSTs.
The same loop folds the metrics' closed hours (engage.metrics.fold): the worker is the
one long-running engage process that is not on a request's path, is enabled by the
packages, and already wakes every second; several workers may fold at once. So does
the finishing of clicks answered whose event no redirector appended (engage.pendingclicks).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from engage.metrics.fold import Folder
from engage.pendingclicks import Finisher
from engage.settings import Settings
from engage.store.events import EventError, EventLog
from engage.webhooks import assemble, auth, deliver
from engage.webhooks.config import Webhook
from engage.webhooks.keys import LAYOUT1
from engage.webhooks.payload import batch_body
from engage.webhooks.queue import Batch, BatchQueue, Missing, Taken, Waiting
from engage.webhooks.schedule import Schedule, Waker
from engage.webhooks.store import Attempt, WebhookStore

log = logging.getLogger("engage.webhooks")
REFRESH = 1.0  # seconds between reads of the webhook list


@dataclass(frozen=True)
class Timing:
    """The time knobs, from settings (tests shrink them), and where batches may go."""

    batch_size: int
    interval_ms: int
    timeout: float
    retry_base: float
    retry_max: float
    window_ms: int
    allow_private: bool = False  # [webhooks] allow_private_targets

    @classmethod
    def from_settings(cls, settings: Settings) -> Timing:
        return cls(settings.webhook_batch_size, int(settings.webhook_batch_interval * 1000),
                   settings.webhook_timeout, settings.webhook_retry_base,
                   settings.webhook_retry_max, int(settings.webhook_retry_window * 1000),
                   settings.webhook_allow_private_targets)

    @property
    def lease_ms(self) -> int:
        """Longest a send can take (token fetch + POST, each bounded by the timeout) + slack."""
        return int((2 * self.timeout + 2) * 1000)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones: base, doubling, capped."""
        return float(min(self.retry_base * 2 ** min(attempts - 1, 40), self.retry_max))


class HookLoop(threading.Thread):
    """Delivers one webhook's batches, from every shard, until stopped or the webhook goes."""

    def __init__(self, hook: Webhook, client: redis.Redis, store: WebhookStore,
                 events: EventLog, timing: Timing, stop: threading.Event) -> None:
        super().__init__(name=f"webhook-{hook.id}", daemon=True)
        self.hook, self.client, self.store, self.events = hook, client, store, events
        self.timing, self.stop = timing, stop
        self.gone = threading.Event()
        self.queue = BatchQueue(client, store.keys, hook.id)
        self.schedule = Schedule(store.shards())  # layout 1's while it has data
        self.waker = Waker(client, store.keys, stop)
        self.tokens = auth.Tokens()

    def run(self) -> None:
        while not (self.stop.is_set() or self.gone.is_set()):
            try:
                self.step()
            except redis.RedisError as exc:
                log.error("webhook %s: redis error: %s; retrying in 1 s", self.hook.id, exc)
                self.stop.wait(1.0)
            except Exception:  # a bug must not end this webhook's deliveries for good
                log.exception("webhook %s: unexpected error; retrying in 1 s", self.hook.id)
                self.stop.wait(1.0)

    def step(self) -> None:
        """One batch sent (a due retry first, then new events), or one look, or a sleep."""
        hook, schedule = self.hook, self.schedule
        if not hook.active:
            self.stop.wait(REFRESH)
            return
        expired = schedule.due_expired()
        if expired:
            schedule.learn_due(self.queue.next_due(expired))
        shard = schedule.pick_claim()
        if shard is not None:
            due = self.queue.claim_due(shard, self.timing.lease_ms)
            if isinstance(due, Waiting):
                schedule.due_in(shard, due.ms)
                return
            batch = assemble.ready(self.queue, due, self.timing.lease_ms)
            if batch is not None:
                self.attempt(hook, batch)
            elif due.home is not None:
                schedule.due_by(shard, 0)  # a part made a batch of its own is due now
            return
        size = self.batch_size
        looks = schedule.to_look()
        if looks:
            for shard, backlog in self.queue.peek(looks, size).items():
                if isinstance(backlog, Missing):
                    self.recreate_group(shard)
                else:
                    schedule.learn(shard, backlog.waiting, backlog.age_ms, backlog.newest)
        if schedule.ready_in(size, self.timing.interval_ms / 1000) > 0:
            self.waker.sleep(schedule, size, self.timing.interval_ms / 1000)
            return
        batch, seen = assemble.build(self.queue, schedule.plan(size), hook.events,
                                     self.timing.lease_ms)
        for shard, got in seen.items():
            if isinstance(got, Taken):
                schedule.learn(shard, got.left.waiting, got.left.age_ms, looked=False)
            elif isinstance(got, Missing):
                self.recreate_group(shard)
            else:  # none of our types among what it read: more may wait
                schedule.learn(shard, 0, 0, looked=False)
                schedule.look_now(shard)
        if batch is not None:
            self.attempt(hook, batch)

    @property
    def batch_size(self) -> int:
        return 1 if self.hook.format == "events" else self.timing.batch_size  # one event per POST

    def recreate_group(self, shard: int) -> None:
        """The group vanished from a shard: recreate it (new events only) unless the webhook
        is deleted. Layout 1's stream is read while it has the group, never given one."""
        if shard == LAYOUT1:
            self.schedule.drop_stream(shard)
            return
        hook_key = self.store.keys.hook(self.hook.id)
        if not self.client.exists(hook_key):
            self.gone.set()
            return
        log.warning("webhook %s: consumer group missing on shard %d, created at the stream's "
                    "end", self.hook.id, shard)
        self.queue.ensure_group(shard)
        if not self.client.exists(hook_key):  # deleted meanwhile: leave no group behind
            self.store.drop_groups(self.hook.id)
            self.gone.set()

    def attempt(self, hook: Webhook, batch: Batch) -> None:
        if batch.body is not None:
            body, size = batch.body, batch.size
        else:
            stored = (self.events.fetch_many(batch.entries()) if batch.parts
                      else self.events.fetch_json(batch.shard, batch.ids))
            body, size = batch_body(stored, hook.format)
        attempt = batch.attempts + 1
        if size == 0:  # every event already trimmed by the events retention
            settled = self.queue.succeed(batch)
            self._record(batch, attempt, 0, 0, "empty", "events expired", settled=settled)
            return
        answer = deliver.send(hook, body, batch.id, self.tokens, self.timing.timeout,
                              self.timing.allow_private)
        if answer.ok:
            settled = self.queue.succeed(batch)
            log.info("webhook %s batch %s: %d events delivered, %s in %d ms (attempt %d)",
                     hook.id, batch.id, size, answer.status, answer.latency_ms, attempt)
            self._record(batch, attempt, answer.status, answer.latency_ms, "delivered",
                         settled=settled)
            return
        delay = self.timing.backoff(attempt)
        error = answer.error or f"HTTP {answer.status}"
        outcome = self.queue.fail(batch, attempt, int(delay * 1000), self.timing.window_ms,
                                  answer.status, error, body)
        if outcome == "retry":
            self.schedule.due_by(batch.shard, int(delay * 1000))
        level = logging.ERROR if outcome == "dead" else logging.WARNING
        log.log(level, "webhook %s batch %s: %s (attempt %d, %d events): %s", hook.id, batch.id,
                error, attempt, size, _next_step(outcome, delay))
        self._record(batch, attempt, answer.status, answer.latency_ms, outcome, error, size,
                     settled=outcome != "lost")

    def _record(self, batch: Batch, attempt: int, code: int, latency_ms: int, outcome: str,
                error: str = "", size: int | None = None, settled: bool = True) -> None:
        """Log the attempt; not for a batch found gone whose webhook is deleted (its log
        would outlive it)."""
        if not settled and not self.client.exists(self.store.keys.hook(self.hook.id)):
            return
        self.store.record(self.hook.id, Attempt(time.time(), batch.id, batch.size if size is None
                                                else size, attempt, code, latency_ms, outcome,
                                                error))


def _next_step(outcome: str, delay: float) -> str:
    if outcome == "retry":
        return f"retry in {delay:g} s"
    if outcome == "dead":
        return "retry window over, parked in the dead-letter stream"
    return "another worker took the batch over"


class Worker:
    """Keeps one HookLoop per webhook, in step with the definitions in Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.store = WebhookStore(client, settings.key_prefix, settings.webhook_status_retention)
        self.events = EventLog(client, settings.key_prefix, settings.events_retention_days)
        self.timing = Timing.from_settings(settings)
        self.stop = threading.Event()
        self.loops: dict[str, HookLoop] = {}
        # the metrics' housekeeping rides on this loop (engage.metrics.fold)
        self.folder = Folder(client, settings.key_prefix, settings.metrics_retention_days)
        # and the appends of answered clicks no redirector finished (engage.pendingclicks)
        self.finisher = Finisher.from_settings(client, settings)

    def run(self) -> None:
        log.info("engage-webhooks worker started (batch %d events / %g s, timeout %g s)",
                 self.timing.batch_size, self.timing.interval_ms / 1000, self.timing.timeout)
        while not self.stop.is_set():
            try:
                self.refresh()
            except redis.RedisError as exc:
                log.error("cannot read the webhook list: %s", exc)
            try:
                self.folder.tick()
            except (redis.RedisError, EventError) as exc:
                log.error("metrics: folding closed hours failed (the next run resumes): %s", exc)
            except Exception:  # housekeeping: a bug in it must never stop the deliveries
                log.exception("metrics: folding closed hours failed (the next run resumes)")
            try:
                self.finisher.tick()
            except Exception:  # each shard's Redis errors are handled inside: a bug
                log.exception("pending clicks: finishing failed (the next run resumes)")
            self.stop.wait(REFRESH)
        for loop in self.loops.values():
            loop.join(self.timing.timeout * 2 + 5)
        log.info("engage-webhooks worker stopped")

    def refresh(self) -> None:
        hooks = {hook.id: hook for hook in self.store.all()}
        for hook_id in set(self.loops) - set(hooks):
            self.loops.pop(hook_id).gone.set()
            log.info("webhook %s deleted: its loop stops", hook_id)
        for hook_id, hook in hooks.items():
            loop = self.loops.get(hook_id)
            if loop is None or not loop.is_alive():
                loop = HookLoop(hook, self.client, self.store, self.events, self.timing, self.stop)
                self.loops[hook_id] = loop
                loop.start()
                log.info("webhook %s (%s) -> %s", hook_id, hook.name, hook.target)
            loop.hook = hook
