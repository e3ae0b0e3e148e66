"""Webhooks over layout 2's 24 shards: every shard's events delivered once, in full batches
that mix shards, no shard starved by a busy one, a sleeping worker woken by an event in any
shard, layout 1's stream and retries drained, dead letters per shard, deletion clean."""
from __future__ import annotations

import json
import time
from collections import Counter

from engage.store import keys
from engage.store.events import entries_of
from engage.store.redisconn import reply_text
from engage.webhooks import schedule
from engage.webhooks.keys import Keys
from engage.webhooks.queue import BatchQueue

from .conftest import PREFIX, make_event, sparkpost_events

K = Keys(PREFIX)


def batch_shards(rec) -> list[set[int]]:
    """The shards of each delivered batch's events, in arrival order."""
    return [{e["_shard"] for e in sparkpost_events(r.body)} for r in rec.delivered()]


def test_events_of_every_shard_arrive_exactly_once_in_full_batches_that_mix_shards(
        receiver, add_hook, append, start_worker, redis_client):
    rec = receiver()
    hook = add_hook(rec.url)
    ids = [mid for shard in keys.shard_ids() for mid in append(3, start=shard * 10, shard=shard)]
    start_worker(webhook_batch_size=5)
    events = rec.wait_events(len(ids))
    time.sleep(0.3)
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    shards = batch_shards(rec)
    sizes = [len(sparkpost_events(r.body)) for r in rec.delivered()]
    assert sorted(sizes) == [2] + [5] * 14  # 72 events: as few POSTs as can hold them
    assert all(len(found) >= 2 for found, size in zip(shards, sizes) if size == 5)  # 3 a shard
    assert set().union(*shards) == set(keys.shard_ids())
    assert {e["_shard"] for e in events} == set(keys.shard_ids())
    for shard in keys.shard_ids():  # every shard's events acknowledged
        assert redis_client.xpending(K.events(shard), Keys.group(hook.id))["pending"] == 0


def test_a_busy_shard_does_not_starve_the_others(receiver, add_hook, append, start_worker):
    rec = receiver()
    add_hook(rec.url)
    busy = append(200, shard=3)  # 20 batches' worth, stored before the worker starts
    quiet = append(1, start=500, shard=11) + append(1, start=600, shard=20)
    start_worker(webhook_batch_size=10, webhook_batch_interval=0.0)  # every shard ready at once
    rec.wait_events(len(busy) + len(quiet))
    arrival = [e["message_id"] for r in rec.delivered() for e in sparkpost_events(r.body)]
    first_batches = {e["message_id"] for r in rec.delivered()[:4] for e in sparkpost_events(r.body)}
    assert set(quiet) <= first_batches, arrival.index(quiet[0])  # served in the first round


def test_a_sleeping_worker_wakes_on_an_event_in_any_shard(receiver, add_hook, append,
                                                          start_worker, monkeypatch):
    """A shard with nothing new is asked again only after 30 s here: only the blocking
    read over every shard's stream can deliver these within the test's few seconds."""
    monkeypatch.setattr(schedule, "IDLE", 30.0)
    rec = receiver()
    add_hook(rec.url)
    start_worker(webhook_batch_interval=0.0)
    time.sleep(1.5)  # its first look at every shard; then it sleeps
    for n, shard in enumerate((0, 9, 23, 14)):
        (mid,) = append(1, start=n, shard=shard)
        rec.wait_for(lambda r, mid=mid: mid in {e["message_id"] for e in r.delivered_events()},
                     timeout=5)


def test_the_batch_interval_is_the_webhooks_not_each_shards(receiver, add_hook, append,
                                                            start_worker):
    """When one shard's batch interval ends, the events waiting in other shards go too:
    an event waits at most the interval, and the webhook's partial batches leave together."""
    rec = receiver()
    add_hook(rec.url)
    start_worker(webhook_batch_interval=1.0)
    time.sleep(1.2)
    (early,) = append(1, shard=2)
    time.sleep(0.5)
    (late,) = append(1, start=1, shard=15)
    rec.wait_events(2)
    arrived = {e["message_id"]: r.at for r in rec.delivered() for e in sparkpost_events(r.body)}
    assert abs(arrived[late] - arrived[early]) < 0.3  # not the late shard's own second


def layout1_events(redis_client, numbers) -> list[str]:
    """Events written as layout 1 did: one untagged stream, the JSON in field ``e``."""
    stream = K.events(keys.LAYOUT1)
    for n in numbers:
        event = make_event(n)
        redis_client.xadd(stream, {"e": json.dumps(event, separators=(",", ":"))})
    return [f"<m{n}@example.com>" for n in numbers]


def test_the_layout1_stream_is_drained_while_it_has_the_group(receiver, add_hook, append,
                                                               start_worker, redis_client):
    rec, other = receiver(), receiver()
    hook = add_hook(rec.url)
    stream, group = K.events(keys.LAYOUT1), Keys.group(hook.id)
    old = layout1_events(redis_client, range(3))  # before the upgrade: the group's backlog
    redis_client.set(keys.layout(PREFIX), "2")  # migrate-layout leaves these to drain
    redis_client.xgroup_create(stream, group, id="0")
    # ...and a batch the old worker had taken and was retrying (layout 1's queue keys)
    assert BatchQueue(redis_client, K, hook.id).take(keys.LAYOUT1, ("click",), 2, 0)
    newcomer = add_hook(other.url, name="made after the upgrade")
    old += layout1_events(redis_client, range(3, 5))
    new = append(4, start=100)
    start_worker()
    events = rec.wait_events(len(old) + len(new))
    other.wait_events(len(new))
    time.sleep(0.3)
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert set(counts) == set(old) | set(new) and set(counts.values()) == {1}
    assert sorted(e["message_id"] for e in other.delivered_events()) == sorted(new)
    by_id = {e["message_id"]: e for e in events}
    assert all(entries_of(int(by_id[m]["event_id"]))[-1][0] == keys.LAYOUT1 for m in old)
    assert redis_client.xpending(stream, group)["pending"] == 0
    assert not redis_client.exists(K.batches(hook.id, keys.LAYOUT1), K.due(hook.id, keys.LAYOUT1))
    groups = {reply_text(g["name"]) for g in redis_client.xinfo_groups(stream)}
    assert groups == {group} and Keys.group(newcomer.id) not in groups  # none made there


def test_dead_letters_are_kept_per_shard_listed_newest_first_and_replayed(
        receiver, add_hook, append, start_worker, store, run):
    rec = receiver(503)
    hook = add_hook(rec.url)
    start_worker(webhook_retry_window=0.0)  # parked after the first failure
    first = append(2, shard=4)
    store_wait(lambda: len(store.dead_letters()) == 1)
    second = append(3, start=10, shard=19)
    store_wait(lambda: len(store.dead_letters()) == 2)
    newer, older = store.dead_letters()
    assert (newer["size"], older["size"]) == ("3", "2")
    assert newer["id"].startswith(keys.SHARD_TAGS[19] + ":")
    assert older["id"].startswith(keys.SHARD_TAGS[4] + ":")
    code, out, _ = run("dead-letters", "--webhook", hook.id)
    assert code == 0 and out.index(newer["id"]) < out.index(older["id"])
    rec.answer = 200
    assert run("replay", "--all")[0] == 0
    events = rec.wait_events(5)
    assert sorted(e["message_id"] for e in events) == sorted(first + second)
    assert store.dead_letters() == [] and store.pending(hook.id) == []


def store_wait(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def test_delete_removes_the_groups_and_queues_of_every_shard(
        receiver, add_hook, append, start_worker, store, redis_client, run):
    rec = receiver(500)
    hook = add_hook(rec.url)
    redis_client.xadd(K.events(keys.LAYOUT1), {"e": json.dumps(make_event(99))})
    redis_client.xgroup_create(K.events(keys.LAYOUT1), Keys.group(hook.id), id="0")
    start_worker()
    append(12)
    store_wait(lambda: len({b.shard for b, _ in store.pending(hook.id)}) >= 3)
    assert run("delete", hook.id)[0] == 0
    time.sleep(1.5)  # the worker's loop notices and stops; nothing may come back
    for shard in keys.shard_ids(layout1=True):
        groups = {reply_text(g["name"]) for g in redis_client.xinfo_groups(K.events(shard))}
        assert Keys.group(hook.id) not in groups
    left = [reply_text(k) for k in redis_client.scan_iter(match=f"{PREFIX}*")
            if hook.id in reply_text(k)]
    assert left == []
