"""Batches that mix shards (engage.webhooks.assemble): a worker stopped after each step
of building, sending and settling one loses nothing, and a worker started after it
delivers every event, a second time only under the same batch id, or parks it; a part
taken late, after its batch was sent without it, goes out as a batch of its own."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from engage.store import keys
from engage.store.events import EventLog
from engage.webhooks import assemble, deliver
from engage.webhooks.keys import Keys
from engage.webhooks.queue import BatchQueue
from engage.webhooks.worker import HookLoop, Timing

from .conftest import PREFIX, make_event
from .test_shards import store_wait

K = Keys(PREFIX)
SHARDS = (2, 9, 14, 21)


class Crash(BaseException):
    """The worker dies here (not an Exception: nothing may catch it)."""


class ShortLease(Timing):
    @property
    def lease_ms(self) -> int:
        return 300  # the dead worker's batch comes back quickly


def mixed_events(redis_client: Any) -> list[str]:
    """Three events in each of four shards: one batch's worth (batch_size 20)."""
    events = [make_event(n, shard=SHARDS[n % 4]) for n in range(12)]
    EventLog(redis_client, PREFIX).append_many(events)
    return [e["message_id"] for e in events]


def crash_at(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make the dying worker stop at ``step``."""
    def die(*args: Any, **kwargs: Any) -> Any:
        raise Crash(step)

    if step == "before home settled":
        def settle_parts_then_die(self: BatchQueue, batch: Any) -> bool:
            self.settle_parts(batch)
            raise Crash(step)
        monkeypatch.setattr(BatchQueue, "succeed", settle_parts_then_die)
        return
    target = {"after home taken": (BatchQueue, "take_parts"), "after parts taken": (BatchQueue, "seal"),
              "after sealed": (deliver, "send"), "after 2xx": (BatchQueue, "settle_parts"),
              "after parked": (BatchQueue, "settle_parts")}[step]
    monkeypatch.setattr(*target, die)


def dying_loop(hook: Any, redis_client: Any, store: Any, wh_settings: Any, **knobs: Any) -> HookLoop:
    timing = ShortLease(20, 0, 1.0, 0.2, 0.5, knobs.get("window_ms", 30_000), True)
    return HookLoop(hook, redis_client, store, EventLog(redis_client, PREFIX), timing,
                    threading.Event())


def run_until_crash(loop: HookLoop) -> None:
    with pytest.raises(Crash):
        for _ in range(50):
            loop.step()


def settled(redis_client: Any, hook_id: str) -> bool:
    """Every event acknowledged, no batch or part left."""
    return all(redis_client.xpending(K.events(s), Keys.group(hook_id))["pending"] == 0
               and not redis_client.exists(K.batches(hook_id, s), K.due(hook_id, s))
               for s in keys.shard_ids())


@pytest.mark.parametrize("step", ["after home taken", "after parts taken", "after sealed",
                                  "after 2xx", "before home settled"])
def test_a_worker_dying_at_any_step_loses_nothing(step, receiver, add_hook, start_worker, store,
                                                  redis_client, wh_settings, monkeypatch):
    rec = receiver()
    hook = add_hook(rec.url)
    ids = mixed_events(redis_client)
    with monkeypatch.context() as patched:
        crash_at(patched, step)
        run_until_crash(dying_loop(hook, redis_client, store, wh_settings))
    start_worker(webhook_batch_size=20)
    rec.wait_events(len(ids))
    store_wait(lambda: settled(redis_client, hook.id))
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert set(counts) == set(ids)
    if step in ("after 2xx", "before home settled"):  # sent twice, as the same batch
        assert [len(set(r.batch_id for r in rec.delivered()))] == [1] and len(rec.delivered()) == 2
        assert set(counts.values()) == {2}
    else:
        assert set(counts.values()) == {1}
        shards = {e["_shard"] for e in rec.delivered_events()}
        assert shards == set(SHARDS)
    if step != "after home taken":  # the dead worker's batch was the one that mixed them
        assert len(rec.delivered()) <= 2


def test_a_worker_dying_after_parking_a_batch_leaves_its_parts_sent_again(
        receiver, add_hook, start_worker, store, redis_client, wh_settings, monkeypatch):
    rec = receiver(503)
    hook = add_hook(rec.url)
    ids = mixed_events(redis_client)
    with monkeypatch.context() as patched:
        crash_at(patched, "after parked")
        run_until_crash(dying_loop(hook, redis_client, store, wh_settings, window_ms=0))
    [dead] = store.dead_letters()
    assert dead["size"] == "12" and len(dead["ids"].split()) == 12
    rec.answer = 200
    start_worker(webhook_batch_size=20)
    store_wait(lambda: settled(redis_client, hook.id))
    events = rec.delivered_events()
    home = {e["_shard"] for e in events} ^ set(SHARDS)  # the parked batch's own shard
    assert len(home) == 1 and len(events) == 9  # the parts' events: at least once
    assert {e["message_id"] for e in events} < set(ids)


def test_a_part_taken_after_its_batch_was_sealed_goes_as_a_batch_of_its_own(
        receiver, add_hook, start_worker, store, redis_client, wh_settings):
    """A worker that outlived its lease between taking its batch and its parts: another
    worker sealed and sent the batch with what it found; the late parts are not lost."""
    rec = receiver()
    hook = add_hook(rec.url)
    ids = mixed_events(redis_client)
    queue = BatchQueue(redis_client, K, hook.id)
    slow = queue.take(SHARDS[0], ("click",), 3, 300, plan=SHARDS[1:]).batch  # then it stalls
    claimed: list[Any] = []
    store_wait(lambda: claimed.append(queue.claim_due(SHARDS[0], 5000)) or hasattr(claimed[-1], "plan"))
    sealed = assemble.ready(queue, claimed[-1], 5000)  # another worker: no part there yet
    assert sealed is not None and not sealed.parts
    late = queue.take_parts(slow, ("click",), {s: 3 for s in SHARDS[1:]}, 300)
    assert all(got is not None for got in late.values())
    assert queue.seal(slow, {s: got.batch for s, got in late.items()}, 5000) is None  # lease lost
    dying_loop(hook, redis_client, store, wh_settings).attempt(hook, sealed)
    start_worker(webhook_batch_size=20)
    rec.wait_events(len(ids))
    store_wait(lambda: settled(redis_client, hook.id))
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert rec.delivered()[0].batch_id == sealed.id and len(rec.delivered()[0].body) > 2
    assert sealed.id not in {r.batch_id for r in rec.delivered()[1:]}  # the late ones: new ids
