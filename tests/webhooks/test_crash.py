"""The worker as a real process, killed with SIGKILL in the middle of a POST."""
from __future__ import annotations

import threading
import time
from collections import Counter


def test_sigkill_mid_batch_then_restart_delivers_every_event(receiver, add_hook, append,
                                                           spawn_worker, redis_client):
    arrived = threading.Event()
    held: list[str] = []

    def hold_first(request):
        if not held:
            held.append(request.batch_id)
            arrived.set()
            return 500, b"", 30  # held until released; nobody will read this answer
        return 200

    rec = receiver(hold_first)
    add_hook(rec.url)
    worker = spawn_worker()
    time.sleep(1.0)  # its first read of the webhook list
    ids = append(10)
    assert arrived.wait(10), "the worker never posted"
    worker.kill()  # SIGKILL while the batch is in flight
    worker.wait(5)
    rec.release.set()
    ids += append(25, start=10)  # more events while no worker runs
    spawn_worker()
    events = rec.wait_events(35, timeout=20)
    counts = Counter(e["message_id"] for e in events)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert held[0] in {r.batch_id for r in rec.delivered()}  # the same batch, retried
