"""Webhooks on a Redis Cluster (3 masters) with a prefix without a hash tag: the shards
spread over the masters, so a script or transaction that touched two shards, or a
shard's keys and an unsharded one, would fail with CROSSSLOT. Batches mix the shards of
several masters; every event delivered once, retried, parked, replayed; the worker
polls (one XREAD cannot span slots); deletion leaves no key on any master."""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from engage.store import keys
from engage.store.events import EventLog
from engage.store.redisconn import connect, reply_text, scan_keys
from engage.webhooks import config
from engage.webhooks.config import Webhook
from engage.webhooks.keys import Keys
from engage.webhooks.store import WebhookStore

from .conftest import make_event, sparkpost_events
from .test_shards import store_wait

P = "whc:"  # no hash tag: 24 shards over 3 masters


def test_webhooks_on_a_cluster_whose_shards_span_the_masters(redis_cluster, receiver,
                                                            start_worker):
    redis_cluster.flush()
    cluster = connect(redis_cluster.url)
    try:
        run_on(cluster, redis_cluster, receiver, start_worker)
    finally:
        cluster.close()


def run_on(cluster: Any, redis_cluster: Any, receiver: Any, start_worker: Any) -> None:
    masters = {cluster.get_node_from_key(keys.events(P, s)).name for s in keys.shard_ids()}
    assert len(masters) == 3
    failing = threading.Event()
    failing.set()
    rec = receiver(lambda r: 503 if failing.is_set() else 200)
    store = WebhookStore(cluster, P)
    hook = config.validate(Webhook(id="hookc1", name="cluster", target=rec.url, created=time.time()))
    store.create(hook)
    start_worker(redis_url=redis_cluster.url, key_prefix=P, webhook_retry_window=0.5,
                 webhook_batch_interval=0.0)
    log = EventLog(cluster, P)
    log.append_many([make_event(n, shard=n % keys.SHARDS) for n in range(48)])
    store_wait(lambda: sum(int(d["size"]) for d in store.dead_letters()) == 48, timeout=20)
    assert len(store.dead_letters()) < 24  # batches of 10 over 24 shards: they mix shards
    assert store.pending(hook.id) == []
    failing.clear()
    for dead in store.dead_letters():
        store.replay(dead["id"])
    started = time.monotonic()
    log.append_many([make_event(n, shard=n % keys.SHARDS) for n in range(100, 124)])
    rec.wait_events(72, timeout=20)
    polled = time.monotonic() - started
    time.sleep(0.3)
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert len(counts) == 72 and set(counts.values()) == {1}, polled
    master_of = {s: cluster.get_node_from_key(keys.events(P, s)).name for s in keys.shard_ids()}
    assert max(len({master_of[e["_shard"]] for e in sparkpost_events(r.body)})
               for r in rec.delivered()) >= 2  # one POST, events of several masters
    assert store.dead_letters() == [] and store.pending(hook.id) == []
    for shard in keys.shard_ids():
        assert cluster.xpending(Keys(P).events(shard), Keys.group(hook.id))["pending"] == 0

    store.delete(hook.id)
    time.sleep(1.2)  # the worker notices
    left = [reply_text(k) for chunk in scan_keys(cluster, f"{P}*", 1000) for k in chunk
            if "hookc1" in reply_text(k)]
    assert left == []
    for shard in keys.shard_ids():
        assert cluster.xinfo_groups(Keys(P).events(shard)) == []
