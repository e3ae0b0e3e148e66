#!/usr/bin/env python3
"""Metrics benchmark, a script (not a test) that prints figures; loopback only.

    python3 tests/bench/bench_metrics.py [--events 20000] [--memory-events 1000000]
                                         [--days 30] [--campaigns 10]

1. Cost per event: EventLog.append without aggregates ([metrics] retention_days = 0) and
   with them, in alternating blocks on the same Redis in the same run, so both see the
   same load: median/p99 µs per append at the client (one round trip) and µs per script
   call inside Redis (INFO commandstats); and the bytes the flags add to a message's
   status hash.
2. Memory: ``--memory-events`` events over ``--days`` days across ``--campaigns``
   campaigns (2 sending domains, 5 named links each, 30 % non-human verdicts), appended
   with their real timestamps: MEMORY USAGE of every aggregate key and the time the
   metrics API takes over the whole window (median of ``--repeat`` runs, and the Redis
   time of one: INFO commandstats), kept per shard; then the time to fold every closed
   hour (engage.metrics.fold, run after run as the webhooks worker would, without its
   minute between runs) and the same figures again; and ``engage metrics rebuild`` of
   one day.
   Message keys are random-looking (base64url), so messages spread over the 24 shards.
Redis is a private redis-server (AOF on, as in production, for part 1), stopped at the end.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.metrics import fold  # noqa: E402
from engage.metrics.api import parse_metrics_query  # noqa: E402
from engage.metrics.api import run as metrics_run  # noqa: E402
from engage.metrics.rebuild import rebuild  # noqa: E402
from engage.store import aggregates, keys  # noqa: E402
from engage.store.events import EventLog, iso_time  # noqa: E402
from support.procs import RedisServer  # noqa: E402

KINDS = ("open", "open", "initial_open", "initial_open", "click", "click", "click")
VERDICTS = (None,) * 7 + ("scanner", "privacy_proxy", "prefetch")
LINK_NAMES = ("hero", "cta", "product-1", "product-2", "footer")


def message_key(message: int) -> str:
    """A message key as the milter makes them (16 base64url characters), from its number:
    its first characters choose its shard."""
    digest = hashlib.blake2b(b"%d" % message, digest_size=12).digest()
    return base64.urlsafe_b64encode(digest).decode()


def sent_key(prefix: str, message: int, hour: str) -> str:
    return keys.aggregate(prefix, keys.shard_of(message_key(message)), "s", hour)


def event(rng: random.Random, message: int, campaigns: int, when: float) -> dict[str, Any]:
    """A track_event with the fields the append script and its indexes read."""
    kind = rng.choice(KINDS)
    data: dict[str, Any] = {
        "type": kind, "timestamp": iso_time(when), "message_id": f"<m{message}@example.com>",
        "transmission_id": message_key(message), "campaign_id": f"campaign-{message % campaigns}",
        "rcpt_to": f"r{message}@example.net", "subject": "Spring sale",
        "sending_domain": ("example.com", "news.example.com")[message // campaigns % 2],
        "ip_address": "192.0.2.1", "user_agent": "Mozilla/5.0"}
    if kind == "click":
        name = rng.choice(LINK_NAMES)
        data.update(target_link_name=name, target_link_url=f"https://example.com/{name}")
    verdict = rng.choice(VERDICTS)
    if verdict:
        data["engage"] = {"verdict": verdict, "reasons": ["bench"]}
    return data


def append_cost(client: redis.Redis, count: int) -> None:
    logs = {"without": EventLog(client, "off:", metrics_retention_days=0),
            "with": EventLog(client, "on:", metrics_retention_days=400)}
    times: dict[str, list[float]] = {name: [] for name in logs}
    server: dict[str, list[float]] = {name: [0.0, 0.0] for name in logs}  # usec, calls
    messages = max(count // 5, 1)
    for block in range(0, count, 250):
        for name, log in logs.items():
            rng_block = random.Random(block)  # the same events for both
            client.config_resetstat()
            for _ in range(block, min(block + 250, count)):
                data = event(rng_block, rng_block.randrange(messages), 10, time.time())
                started = time.perf_counter()
                log.append(data)
                times[name].append((time.perf_counter() - started) * 1e6)
            stats = client.info("commandstats").get("cmdstat_evalsha", {})
            server[name][0] += stats.get("usec", 0)
            server[name][1] += stats.get("calls", 0)
    print(f"1. EventLog.append, {count} events per variant, alternating blocks of 250")
    print(f"   {'':9} {'median µs':>10} {'p99 µs':>8} {'in Redis µs/call':>17}")
    medians = {}
    for name, values in times.items():
        values.sort()
        medians[name] = statistics.median(values)
        usec, calls = server[name]
        print(f"   {name:9} {medians[name]:10.1f} {values[int(len(values) * 0.99)]:8.1f} "
              f"{usec / max(calls, 1):17.1f}")
    added = medians["with"] - medians["without"]
    inside = {name: usec / max(calls, 1) for name, (usec, calls) in server.items()}
    print(f"   added per event: {added:+.1f} µs median ({added / medians['without']:+.0%}); "
          f"in Redis {inside['with'] - inside['without']:+.1f} µs")
    sizes = {}
    for name, prefix in (("without", "off:"), ("with", "on:")):
        found = [key for key in client.scan_iter(f"{prefix}*ms:*", count=1000)][:2000]
        sizes[name] = statistics.mean(client.memory_usage(key, samples=0) for key in found)
    print(f"   status hash per engaged message: {sizes['without']:.0f} B without, "
          f"{sizes['with']:.0f} B with aggregates ({sizes['with'] - sizes['without']:+.0f} B)")


def memory(client: redis.Redis, count: int, days: int, campaigns: int, repeat: int) -> None:
    client.config_set("appendonly", "no")  # a million events need no AOF to be counted
    client.flushall()
    log = EventLog(client, "engage:", retention_days=days + 2)
    rng = random.Random(2)
    end = int(time.time()) // 3600 * 3600
    start = end - days * 86400
    messages = count // 5
    sent = client.pipeline(transaction=False)
    injected = [start + rng.randrange(days * 86400 - 6 * 3600) for _ in range(messages)]
    for message, when in enumerate(injected):
        hour = aggregates.hour_of(when)
        key = sent_key("engage:", message, hour)
        sent.hincrby(key, aggregates.sent_field(f"campaign-{message % campaigns}",
                                                ("example.com", "news.example.com")[
                                                    message // campaigns % 2]))
        sent.expireat(key, aggregates.expires_at(hour, 400))
    sent.execute()
    planned = sorted((injected[m] + rng.randrange(6 * 3600), m)
                     for m in (rng.randrange(messages) for _ in range(count)))
    started = time.perf_counter()
    for offset in range(0, count, 5000):
        log.append_many(event(rng, m, campaigns, when) for when, m in planned[offset:offset + 5000])
    elapsed = time.perf_counter() - started
    print(f"2. {count} events over {days} days, {campaigns} campaigns x 2 domains x 5 links, "
          f"{messages} messages (appended in {elapsed:.0f} s, {count / elapsed:.0f}/s pipelined)")
    queries(client, start, days, repeat, "kept per shard")
    began, runs, folded = time.perf_counter(), 0, 0
    while (report := fold.run(client, "engage:", time.time(), 400, start=None)).hours:
        runs, folded = runs + 1, folded + report.buckets
    took = time.perf_counter() - began
    print(f"   fold of every closed hour: {took:.1f} s in {runs} runs of at most "
          f"{fold.FOLD_SECONDS:g} s ({folded} shard buckets merged; 400 days of hours walked)")
    queries(client, start, days, repeat, "closed hours folded")
    day = end - 86400
    began = time.perf_counter()
    report = rebuild(client, "engage:", day, end, 400, time.time())
    print(f"   rebuild of the last day: {time.perf_counter() - began:.1f} s "
          f"(replays all {report.events} retained events)")


def aggregate_memory(client: redis.Redis) -> dict[str, list[int]]:
    """Keys and bytes per kind (s, e, l, d), shard buckets and folded ones together."""
    totals = {kind: [0, 0] for kind in (*aggregates.KINDS, "d")}
    for key in client.scan_iter("engage:*", count=1000):
        family = keys.family_of("engage:", key.decode())
        if family and family.name in ("aggregates", "recipient domains", "folded aggregates",
                                      "folding aggregates"):
            kind = key.decode().removesuffix(":folding")[-15]
            totals[kind][0] += 1
            totals[kind][1] += client.memory_usage(key, samples=0)
    return totals


def queries(client: redis.Redis, start: int, days: int, repeat: int, state: str) -> None:
    totals = aggregate_memory(client)
    size = sum(b for _, b in totals.values())
    print(f"   {state}: aggregates {sum(n for n, _ in totals.values())} keys, "
          f"{size / 2**20:.2f} MiB ("
          + ", ".join(f"{kind} {n} keys {b / 2**20:.2f} MiB" for kind, (n, b) in totals.items())
          + f"); {size / (days * 24):.0f} B per hour; a year at this rate: "
          f"{size / days * 365 / 2**20:.0f} MiB")
    frm = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(start))
    everything = ",".join(aggregates.ENGAGEMENT) + ",count_sent"
    for group, extra in (("", {}), ("campaign", {}), ("time-series", {"precision": "day"}),
                         ("link-name", {"metrics": "count_clicked,count_raw_clicked"})):
        query = parse_metrics_query(group, {"from": frm, "metrics": everything, **extra},
                                    time.time())
        took, rows, inside, stats = [], [], 0.0, {}
        for _ in range(repeat):
            client.config_resetstat()
            began = time.perf_counter()
            rows = metrics_run(client, "engage:", query, time.time(), 400)
            took.append((time.perf_counter() - began) * 1000)
            stats = client.info("commandstats")
            inside = sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0)
                         for name in ("evalsha", "eval")) / 1000
        calls = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))
        print(f"   metrics API /{group or '(summary)'} over {days} days: median "
              f"{statistics.median(took):.0f} ms, min {min(took):.0f} ms of {repeat} "
              f"({len(rows)} rows); in Redis {inside:.0f} ms in {calls} script calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        try:
            client = redis.Redis.from_url(server.url)
            if args.events:
                append_cost(client, args.events)
            if args.memory_events:
                memory(client, args.memory_events, args.days, args.campaigns, args.repeat)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
