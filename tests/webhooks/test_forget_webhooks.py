"""engage forget and the webhook queues: pending batches whose events were deleted do not
stop a running worker (it delivers what is left), dead letters and replayed batches
lose the forgotten recipient's events, and no Redis key holds the address afterwards."""
from __future__ import annotations

import threading
import time

from engage.erasure.forget import Forgetter
from engage.erasure.scrub import Address
from engage.store.events import EventLog
from support.redisdump import traces

from .conftest import PREFIX, make_event

JANE = "Jane.Roe@Example.ORG"


def append_as(redis_client, rcpts: dict[int, str], numbers: range) -> None:
    """Events n in ``numbers``, in one shard (so in one batch); those named in ``rcpts`` go
    to that address instead."""
    events = []
    for n in numbers:
        event = make_event(n, shard=8)
        if n in rcpts:
            event.update(rcpt_to=rcpts[n].lower(), raw_rcpt_to=rcpts[n])
        events.append(event)
    EventLog(redis_client, PREFIX).append_many(events)


def wait(predicate, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.05)


def test_a_worker_with_pending_batches_keeps_running_and_sends_what_is_left(
        receiver, add_hook, spawn_worker, store, redis_client):
    failing = threading.Event()
    failing.set()
    rec = receiver(lambda request: 500 if failing.is_set() else 200)
    hook = add_hook(rec.url)
    worker = spawn_worker()
    append_as(redis_client, {3: JANE, 7: JANE}, range(10))
    wait(lambda: any(r.status == 500 and not r.is_ping for r in rec.requests), what="a failed POST")
    wait(lambda: store.pending(hook.id), what="a pending batch")
    assert traces(redis_client, JANE)

    summary = Forgetter(redis_client, PREFIX).forget(Address.parse(JANE))
    assert summary.events == 2 and traces(redis_client, JANE) == []

    failing.clear()
    events = rec.wait_events(8, timeout=20)
    assert sorted({e["rcpt_to"] for e in events}) == sorted(
        f"user{n}@example.com" for n in range(10) if n not in (3, 7))
    wait(lambda: not store.pending(hook.id), what="an empty queue")
    assert worker.poll() is None, "the worker died"
    assert traces(redis_client, JANE) == []


def test_dead_letters_and_replayed_batches_lose_the_forgotten_events(
        receiver, add_hook, start_worker, store, redis_client):
    rec = receiver(503)
    hook = add_hook(rec.url)
    worker = start_worker(webhook_retry_window=0.0)  # parked after the first failure
    append_as(redis_client, {1: JANE}, range(0, 3))
    wait(lambda: len(store.dead_letters()) == 1, what="the first dead letter")
    append_as(redis_client, {4: JANE.upper()}, range(3, 6))
    wait(lambda: len(store.dead_letters()) == 2, what="the second dead letter")
    worker.stop.set()
    wait(lambda: not any(t.name.startswith("webhook-") for t in threading.enumerate()),
         what="the worker stopping")
    second, first = store.dead_letters()  # newest first
    replayed = store.replay(first["id"])  # a queued batch that carries its whole body
    assert traces(redis_client, JANE)

    summary = Forgetter(redis_client, PREFIX).forget(Address.parse(JANE))

    assert (summary.webhook_batches, summary.dead_letters) == (1, 1)
    assert traces(redis_client, JANE) == []
    [(batch, _)] = store.pending(hook.id)
    assert batch.id == replayed and batch.size == 2
    [parked] = store.dead_letters()
    assert parked["batch"] == second["batch"] and parked["id"] != second["id"]
    assert parked["size"] == "2" and len(parked["ids"].split()) == 2
    rec.answer = 200
    store.replay(parked["id"])
    start_worker()
    events = rec.wait_events(4)
    assert sorted(e["rcpt_to"] for e in events) == [f"user{n}@example.com" for n in (0, 2, 3, 5)]


def append_mixed(redis_client, jane_at: tuple[int, ...]) -> list[str]:
    """Eight events over four shards (one batch); those numbered in ``jane_at`` are Jane's."""
    events = []
    for n in range(8):
        event = make_event(n, shard=(3, 10, 17, 22)[n % 4])
        if n in jane_at:
            event.update(rcpt_to=JANE.lower(), raw_rcpt_to=JANE)
        events.append(event)
    EventLog(redis_client, PREFIX).append_many(events)
    return [e["rcpt_to"] for e in events if e["rcpt_to"] != JANE.lower()]


def test_forget_reaches_pending_batches_and_dead_letters_that_mix_shards(
        receiver, add_hook, start_worker, store, redis_client):
    rec = receiver(503)
    hook = add_hook(rec.url)
    worker = start_worker(webhook_batch_size=20)
    kept = append_mixed(redis_client, (1, 6))
    wait(lambda: store.pending(hook.id), what="a pending batch")
    [(pending, _)] = store.pending(hook.id)
    assert pending.size == 8 and len(pending.parts) == 3  # its home's shard and three more
    worker.stop.set()
    wait(lambda: not any(t.name.startswith("webhook-") for t in threading.enumerate()),
         what="the worker stopping")
    start_worker(webhook_batch_size=20, webhook_retry_window=0.0)  # parks at the next failure
    wait(lambda: len(store.dead_letters()) == 1, what="the dead letter")
    [dead] = store.dead_letters()
    assert dead["size"] == "8" and sum(":" in i for i in dead["ids"].split()) == 6
    assert traces(redis_client, JANE)

    summary = Forgetter(redis_client, PREFIX).forget(Address.parse(JANE))

    assert summary.events == 2 and summary.dead_letters == 1
    assert traces(redis_client, JANE) == []
    [dead] = store.dead_letters()
    assert dead["size"] == "6" and len(dead["ids"].split()) == 6  # Jane's ids gone, of every shard
    rec.answer = 200
    store.replay(dead["id"])
    events = rec.wait_events(6)
    assert sorted(e["rcpt_to"] for e in events) == sorted(kept)
    assert [r.batch_id for r in rec.delivered()] == [pending.id]
