#!/usr/bin/env python3
"""Erasure benchmark, a script (not a test) that prints figures.

    python3 tests/bench/bench_forget.py [--messages 500000] [--events 200000] [--chunk 1000]

A private redis-server (AOF on, as in production) gets ``--messages`` message records
as the milter writes them (one recipient each, metadata, one template per 10000 messages,
a copy in each shard) and ``--events`` events as the redirector appends them (each in its
message's shard: stream + indexes + status hash). Then ``engage forget`` for one
recipient (3 messages, 6 events) is timed: the keyspace SCAN with the records filter and
the passes over the 24 shards' streams (and layout 1's), as seconds per million, and the
compaction of the streams that lost events; meanwhile a thread PINGs Redis in a loop,
and the slowest PING says how long one chunk holds Redis (what clicks and the milter
would wait at worst). Finally the
memory an index recipient -> message keys would cost (a set per recipient, as the
alternative to the SCAN), in bytes per message.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.erasure.forget import Forgetter  # noqa: E402
from engage.erasure.scrub import Address  # noqa: E402
from engage.store.events import EventLog, RequestFacts, build_event  # noqa: E402
from engage.store.keys import shard_ids  # noqa: E402
from engage.store.links import Link, LinkStore, MessageRecord, Resolved, Template, new_message_key  # noqa: E402
from support.procs import RedisServer  # noqa: E402

PREFIX = "bench:"
FORGOTTEN = "user77@example.com"


def rcpt(n: int) -> str:
    return f"user{n}@example.com"


def populate(client: redis.Redis, messages: int, events: int) -> list[str]:
    """Records and events; the message keys, in order."""
    store = LinkStore(client, PREFIX)
    templates = [Template(links=tuple(Link(f"https://shop.example/{t}/{i}") for i in range(20)),
                          campaign_id=f"c{t}", friendly_from="news@shop.example",
                          sending_domain="shop.example") for t in range(messages // 10000 + 1)]
    for template in templates:  # one copy per shard, as the milter leaves them
        for shard in shard_ids():
            client.set(store.template_key(template.template_id, shard), template.to_json())
    keys = []
    pipe = client.pipeline(transaction=False)
    for n in range(messages):
        key = new_message_key()
        keys.append(key)
        template = templates[n // 10000]
        who = FORGOTTEN if n in (5, messages // 2, messages - 5) else rcpt(n)
        record = MessageRecord(rcpt_to=(who,), mail_from="bounces@shop.example",
                               subject="Spring sale", message_id=f"<{key}@shop.example>",
                               queue_id="4XyZ1", injection_time=1700000000,
                               metadata={"user_id": n}, template_id=template.template_id)
        pipe.set(store.message_key(key), record.to_text())
        if n % 10000 == 9999:
            pipe.execute()
    pipe.execute()
    log = EventLog(client, PREFIX)
    facts = RequestFacts("198.51.100.7", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "en", None, "")
    now = time.time()
    batch = []
    for n in range(events):
        index = (n * 7919) % messages
        if n in (10, events // 2, events - 10):
            index = 5  # the forgotten recipient's first message
        record = MessageRecord.from_text(client.get(store.message_key(keys[index])))
        template = templates[index // 10000]
        resolved = Resolved(keys[index], template, record, template.links[n % 20])
        batch.append(build_event("click", resolved, facts, now - events + n))
        if len(batch) == 2000:
            log.append_many(batch, now=now)
            batch = []
    if batch:
        log.append_many(batch, now=now)
    return keys


class Pinger(threading.Thread):
    """PINGs in a loop; the slowest answer while it ran."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.stop = threading.Event()
        self.slowest = 0.0
        self.count = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.client.ping()
            self.slowest = max(self.slowest, time.perf_counter() - started)
            self.count += 1


def timed(spans: dict[str, float], owner: object, name: str) -> None:
    """Wrap ``owner.name`` to add the seconds of each call to ``spans[name]``."""
    method = getattr(owner, name)
    spans[name] = 0.0

    def wrapper(*args, _method=method, _name=name):
        started = time.perf_counter()
        try:
            return _method(*args)
        finally:
            spans[_name] += time.perf_counter() - started
    setattr(owner, name, wrapper)


def timed_forget(client: redis.Redis, url: str, chunk: int) -> None:
    forgetter = Forgetter(client, PREFIX, chunk=chunk)
    spans: dict[str, float] = {}
    timed(spans, forgetter, "_records")
    timed(spans, forgetter.streams, "_shard")  # one shard's stream pass
    timed(spans, forgetter.streams, "compact")
    pinger = Pinger(url)
    client.config_resetstat()
    pinger.start()
    summary = forgetter.forget(Address.parse(FORGOTTEN))
    pinger.stop.set()
    pinger.join()
    stats = client.info("commandstats")
    busy = {name[len("cmdstat_"):]: stat["usec"] / 1e6 for name, stat in stats.items()}
    scripts = busy.get("evalsha", 0.0) + busy.get("eval", 0.0)
    print(f"  chunk {chunk}: {summary.seconds:.2f} s in all; {summary.messages} records, "
          f"{summary.events} events removed")
    print(f"    keyspace SCAN + record filter: {spans['_records']:.2f} s for "
          f"{summary.keys_scanned} keys = {spans['_records'] / summary.keys_scanned * 1e6:.1f} s "
          "per million keys")
    if summary.events_scanned:
        print(f"    events stream passes (25 streams): {spans['_shard']:.2f} s for "
              f"{summary.events_scanned} events = "
              f"{spans['_shard'] / summary.events_scanned * 1e6:.1f} s per million events")
    print(f"    compaction of {len(summary.compacted)} streams: {spans['compact']:.2f} s")
    print(f"    Redis CPU in commands: {sum(busy.values()) - busy.get('ping', 0.0):.2f} s "
          f"(scripts {scripts:.2f} s, SCAN {busy.get('scan', 0.0):.2f} s); "
          f"slowest PING meanwhile: {pinger.slowest * 1000:.1f} ms ({pinger.count} PINGs)")


def index_cost(client: redis.Redis, keys: list[str]) -> None:
    """used_memory with and without one set per recipient holding its message keys."""
    client.execute_command("MEMORY", "PURGE")
    before = client.info("memory")["used_memory"]
    pipe = client.pipeline(transaction=False)
    for n, key in enumerate(keys):
        pipe.sadd(f"{PREFIX}mr:{rcpt(n)}", key)
        if n % 10000 == 9999:
            pipe.execute()
    pipe.execute()
    after = client.info("memory")["used_memory"]
    print(f"  an index recipient -> message keys (one set per recipient): "
          f"{(after - before) / len(keys):.0f} bytes per message")
    record = client.memory_usage(LinkStore(client, PREFIX).message_key(keys[1000]))
    print(f"  (one message record: {record} bytes by MEMORY USAGE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, action="append")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-forget-") as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        try:
            client = redis.Redis.from_url(server.url)
            started = time.perf_counter()
            keys = populate(client, args.messages, args.events)
            print(f"{args.messages} message records, {args.events} events, "
                  f"{client.dbsize()} keys (filled in {time.perf_counter() - started:.0f} s)")
            chunks = args.chunk or [1000]
            for chunk in chunks:
                timed_forget(client, server.url, chunk)
                # the next run finds nothing to remove but reads the same amount
            index_cost(client, keys)
            print(json.dumps({"messages": args.messages, "events": args.events}))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
