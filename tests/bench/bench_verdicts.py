#!/usr/bin/env python3
"""Verdict benchmark, a script (not a test) that prints figures: what classifying costs a click.

    python3 tests/bench/bench_verdicts.py [--calls 100000] [--resolves 5000]

1. ``classify()`` in microseconds per call with the shipped rules (etc/engage/machines.conf):
   a person's click (browser user agent, residential address: the common case), the
   recorded scanner/proxy patterns of tests/data/verdict_requests.json in turn, and a new
   user agent on every call (the user-agent cache never hits: the worst case).
2. The network lookup alone against 70 shipped networks and against 20,000 /24s plus the
   shipped ones (one dictionary lookup per distinct prefix length, so the list's length
   should not show).
3. The click path's Redis part on a private redis-server (AOF on, loopback): one
   ``LinkStore.resolve`` round trip without and with the click-state commands (SADD,
   EXPIRE, SCARD, SISMEMBER in the same pipeline), microseconds per click, one thread.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.store.links import Link, LinkStore, MessageRecord, Template, click_token, new_message_key  # noqa: E402
from engage.verdicts import machines  # noqa: E402
from engage.verdicts.judge import Judge  # noqa: E402
from engage.verdicts.rules import Facts, Thresholds, classify  # noqa: E402
from support.procs import RedisServer  # noqa: E402

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")


ROUNDS = 5  # the machine is shared: the best of five rounds is the cost, the median its noise


def per_call(label: str, calls: int, run) -> None:
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run(calls)
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    rounds.sort()
    print(f"{label:<56} best {rounds[0]:7.2f}  median {rounds[ROUNDS // 2]:7.2f} us/call "
          f"({calls} calls x {ROUNDS})")


def bench_classify(rules: machines.Rules, calls: int) -> None:
    limits = Thresholds()
    person = Facts("click", "GET", "198.51.100.23", CHROME, 3600.0)
    per_call("classify: a person's click (cached user agent)", calls,
             lambda n: [classify(person, rules, limits) for _ in range(n)])
    cases = json.loads((ROOT / "tests" / "data" / "verdict_requests.json").read_text())
    recorded = [Facts(c["kind"], c.get("method", "GET"), c["ip"], c["ua"], c["age"],
                      c.get("links_in_second", 0), c.get("trap", False), c.get("after_trap", False))
                for c in cases]
    per_call(f"classify: the {len(recorded)} recorded patterns in turn", calls,
             lambda n: [classify(recorded[i % len(recorded)], rules, limits) for i in range(n)])
    fresh = [Facts("click", "GET", "198.51.100.23", f"{CHROME} build/{i}", 3600.0)
             for i in range(calls * ROUNDS)]
    misses = iter(fresh)
    per_call("classify: a new user agent every call (cache misses)", calls,
             lambda n: [classify(next(misses), rules, limits) for _ in range(n)])


def bench_networks(rules: machines.Rules, calls: int) -> None:
    per_call(f"network lookup, shipped list ({sum(len(m.networks) for m in rules.machines)} nets)",
             calls, lambda n: [rules._network_hits("198.51.100.23") for _ in range(n)])
    with tempfile.TemporaryDirectory() as tmp:
        many = Path(tmp) / "many.conf"
        nets = "\n".join(f"net = 10.{i // 256}.{i % 256}.0/24" for i in range(20000))
        many.write_text(f"[Many]\nverdict = scanner\n{nets}\n")
        big = machines.load([machines.shipped_rules(), str(many)])
    per_call("network lookup, shipped list + 20,000 /24s", calls,
             lambda n: [big._network_hits("198.51.100.23") for _ in range(n)])


def bench_redis(resolves: int) -> None:
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            store = LinkStore(client, "bench:")
            template = Template(links=tuple(Link(f"https://example.com/{n}") for n in range(10)))
            key = new_message_key()
            store.register(key, template, MessageRecord(injection_time=1700000000,
                                                        template_id=template.template_id))
            token = click_token(key, template.template_id, 3)
            judge = Judge(client, "bench:", machines.load([machines.shipped_rules()]), Thresholds(), 30)
            per_call("resolve: the link lookup alone (one round trip)", resolves,
                     lambda n: [store.resolve(token) for _ in range(n)])
            per_call("resolve + click state in the same round trip", resolves,
                     lambda n: [store.resolve(token, also=judge.click_state(time.time(), "198.51.100.23"))
                                for _ in range(n)])
            resolved = store.resolve(token, also=judge.click_state(time.time(), "198.51.100.23"))
            per_call("judge(): classification of a resolved click", resolves,
                     lambda n: [judge.judge("click", "GET", "198.51.100.23", CHROME, resolved, time.time())
                                for _ in range(n)])
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--resolves", type=int, default=5_000)
    args = parser.parse_args()
    rules = machines.load([machines.shipped_rules()])
    print(f"rules: {rules.summary()}")
    bench_classify(rules, args.calls)
    bench_networks(rules, args.calls)
    bench_redis(args.resolves)


if __name__ == "__main__":
    main()
