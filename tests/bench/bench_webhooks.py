#!/usr/bin/env python3
"""Webhook benchmark, a script (not a test) that prints figures; loopback only.

    python3 tests/bench/bench_webhooks.py [--events 50000] [--clicks 300] [--rate 20]

1. Throughput: ``--events`` click events are stored first, then ``engage-webhooks run``
   (a real process) drains them to a loopback receiver that parses every batch (stdlib
   ThreadingHTTPServer); events/s from the worker's start to the last event's arrival,
   for several batch sizes.
2. Lag: ``--clicks`` real clicks through the redirector (the Flask app in this process,
   one message per click) at ``--rate`` per second while the worker runs; lag = webhook
   arrival at the receiver minus the click's start, median and p99, for batch_interval
   1 s (the default) and 0 (send at once), and POSTs per event. The events of layout 2
   are spread over 24 shards; a batch takes what waits in all of them.
3. Idle cost: Redis commands per second of a worker with one webhook and no events.
With ``--cluster``: the lag and idle figures on a 3-master Redis Cluster with a prefix
without a hash tag (the shards spread over the masters; the worker polls, POLL).
Redis is a private redis-server with AOF on (as in production), stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.settings import Settings  # noqa: E402
from engage.store.events import EventLog, RequestFacts, build_event  # noqa: E402
from engage.store.links import (  # noqa: E402
    Link,
    LinkStore,
    MessageRecord,
    Resolved,
    Template,
    click_token,
    new_message_key,
)
from engage.web.app import create_app  # noqa: E402
from engage.webhooks import config  # noqa: E402
from engage.webhooks.config import Webhook  # noqa: E402
from engage.webhooks.store import WebhookStore  # noqa: E402
from support.procs import RedisServer, stop_process  # noqa: E402

PREFIX = "bench:"


class Receiver:
    """Counts events and notes when each message id first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.batches = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                now = time.time()
                items = json.loads(body)
                with receiver.lock:
                    receiver.batches += 1
                    for item in items:
                        event = item["msys"].get("track_event")
                        if event:
                            receiver.count += 1
                            receiver.arrived.setdefault(event["message_id"], now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.count >= count:
                return True
            time.sleep(0.005)
        return False


def start_worker(redis_url: str, log: Path, **knobs: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ENGAGE_CONFIG": "/dev/null", "ENGAGE_REDIS_URL": redis_url,
           "ENGAGE_KEY_PREFIX": PREFIX, "ENGAGE_LOG_LEVEL": "WARNING",
           "ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "yes",  # the receiver is on loopback
           "PYTHONPATH": str(ROOT / "redirector")}
    env.update({f"ENGAGE_WEBHOOK_{k.upper()}": str(v) for k, v in knobs.items()})
    return subprocess.Popen([sys.executable, "-m", "engage.webhooks", "run"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def add_hook(store: WebhookStore, target: str) -> Webhook:
    hook = config.validate(Webhook(id=f"bench{time.time_ns()}", name="bench", target=target,
                                   created=time.time()))
    store.create(hook)
    return hook


BENCH_TEMPLATE_LINKS = 20


def bench_event(n: int, store: LinkStore) -> tuple[dict[str, Any], Resolved]:
    """Click n of its own message (registered here, as the milter would), as the
    redirector builds it, with the token it came from: stored referring to the message."""
    template = Template(links=tuple(Link(f"https://example.com/p/{i}?utm_source=x", "offer")
                                    for i in range(BENCH_TEMPLATE_LINKS)),
                        campaign_id="bench", tags=("news", "vip"),
                        friendly_from="news@example.com", sending_domain="example.com")
    record = MessageRecord(rcpt_to=(f"user{n}@example.com",), mail_from="bounces@example.com",
                           subject="Spring offers", message_id=f"<{n}@bench>", queue_id="4XyZ1",
                           injection_time=int(time.time() - 60),
                           metadata={"customer": n, "plan": "gold"},
                           template_id=template.template_id)
    key = new_message_key()
    store.register(key, template, record)
    resolved = Resolved(key, template, record, template.links[n % BENCH_TEMPLATE_LINKS])
    facts = RequestFacts("192.0.2.7", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
                         "AppleWebKit/537.36", "en-US,en;q=0.9")
    return build_event("click", resolved, facts, time.time()), resolved


def throughput(client: redis.Redis[bytes], url: str, events: int, batch_size: int,
               workdir: Path) -> float:
    client.flushdb()
    receiver = Receiver()
    add_hook(WebhookStore(client, PREFIX), receiver.url)
    log, store = EventLog(client, PREFIX), LinkStore(client, PREFIX)
    for start in range(0, events, 1000):
        made = [bench_event(n, store) for n in range(start, min(start + 1000, events))]
        log.append_many([event for event, _ in made], resolved=[token for _, token in made])
    started = time.time()
    worker = start_worker(url, workdir / "worker.log", batch_size=batch_size, batch_interval=1)
    try:
        if not receiver.wait(events, timeout=600):
            raise RuntimeError(f"only {receiver.count} of {events} events arrived")
        return events / (receiver.arrived[f"<{events - 1}@bench>"] - started)
    finally:
        stop_process(worker)
        receiver.server.shutdown()


def register_clicks(client: redis.Redis[bytes], count: int) -> list[tuple[str, str]]:
    store = LinkStore(client, PREFIX)
    template = Template(links=(Link("https://example.com/offer?utm_source=bench"),),
                        campaign_id="bench", friendly_from="news@example.com",
                        sending_domain="example.com")
    out = []
    for n in range(count):
        key, message_id = new_message_key(), f"<click{n}.{time.time_ns()}@bench>"
        store.register(key, template, MessageRecord(
            rcpt_to=(f"user{n}@example.com",), subject="Bench", message_id=message_id,
            injection_time=int(time.time()), template_id=template.template_id))
        out.append((click_token(key, template.template_id, 0), message_id))
    return out


def lag(client: redis.Redis[bytes], url: str, clicks: int, rate: float, interval: float,
        workdir: Path) -> tuple[float, float, float]:
    client.flushdb()
    receiver = Receiver()
    add_hook(WebhookStore(client, PREFIX), receiver.url)
    tokens = register_clicks(client, clicks)
    app = create_app(Settings(redis_url=url, key_prefix=PREFIX, rate_limit=0, log_level="WARNING",
                              tracking_url="https://click.example.com"))
    web = app.test_client()
    worker = start_worker(url, workdir / "worker.log", batch_interval=interval)
    clicked: dict[str, float] = {}
    try:
        time.sleep(1.5)  # the worker's start-up and first read of the webhook list
        began = time.time()
        for n, (token, message_id) in enumerate(tokens):
            pause = began + n / rate - time.time()
            if pause > 0:
                time.sleep(pause)
            clicked[message_id] = time.time()
            if web.get(f"/c/{token}").status_code != 302:
                raise RuntimeError("click not redirected")
        if not receiver.wait(clicks, timeout=30):
            raise RuntimeError(f"only {receiver.count} of {clicks} clicks arrived")
    finally:
        stop_process(worker)
        receiver.server.shutdown()
    lags = sorted((receiver.arrived[m] - t) * 1000 for m, t in clicked.items())
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return statistics.median(lags), p99, receiver.count / max(receiver.batches, 1)


def idle_calls(client: redis.Redis[bytes], nodes: list[redis.Redis[bytes]], url: str,
               workdir: Path, seconds: float = 10) -> float:
    """Redis commands per second (all nodes) of a worker with one webhook and no events."""
    for node in nodes:
        node.flushall()
    add_hook(WebhookStore(client, PREFIX), Receiver().url)
    worker = start_worker(url, workdir / "worker.log")
    try:
        time.sleep(3)
        before = sum(int(node.info("stats")["total_commands_processed"]) for node in nodes)
        time.sleep(seconds)
        after = sum(int(node.info("stats")["total_commands_processed"]) for node in nodes)
    finally:
        stop_process(worker)
    return (after - before - 2 * len(nodes)) / seconds  # less our own INFO calls


def cluster_figures(args: argparse.Namespace, workdir: Path) -> None:
    from engage.store.redisconn import connect
    from support.procs import RedisClusterServers

    cluster = RedisClusterServers(workdir / "cluster").start()
    try:
        client = connect(cluster.url)
        nodes = [redis.Redis.from_url(u) for u in cluster.urls]
        print(f"idle        cluster, 3 masters: {idle_calls(client, nodes, cluster.url, workdir):.0f}"
              " Redis commands/s (one webhook, no events)")
        for interval in (1.0, 0.0):
            for node in nodes:
                node.flushall()
            median, p99, per_batch = lag(client, cluster.url, args.clicks, args.rate, interval,
                                         workdir)
            print(f"lag         cluster, batch_interval={interval:g} s: median {median:.0f} ms, "
                  f"p99 {p99:.0f} ms ({per_batch:.1f} events per batch)")
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="clicks per second")
    parser.add_argument("--cluster", action="store_true",
                        help="also on a 3-master Redis Cluster (lag and idle cost)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        workdir = Path(tmp)
        server = RedisServer(workdir / "redis").start()
        client = redis.Redis.from_url(server.url)
        try:
            print(f"engage-webhooks benchmark on {os.cpu_count()} cores, Redis with AOF")
            for size in (100, 1000):
                rate = throughput(client, server.url, args.events, size, workdir)
                print(f"throughput  batch_size={size:<5} {args.events} events: {rate:,.0f} events/s")
            for interval in (1.0, 0.0):
                median, p99, per_batch = lag(client, server.url, args.clicks, args.rate,
                                             interval, workdir)
                print(f"lag         batch_interval={interval:g} s, {args.clicks} clicks at "
                      f"{args.rate:g}/s: median {median:.0f} ms, p99 {p99:.0f} ms "
                      f"({per_batch:.1f} events per batch, {1 / per_batch:.2f} POSTs per event)")
            print(f"idle        {idle_calls(client, [client], server.url, workdir):.0f} Redis "
                  "commands/s (one webhook, no events)")
            if args.cluster:
                cluster_figures(args, workdir)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
