#!/usr/bin/env python3
"""Clicks during a dashboard login flood, a script (not a test) that prints figures.

    python3 tests/bench/bench_login_flood.py [--seconds 10] [--flooders 16] [--clickers 4]
                                             [--rate REQUESTS_PER_SECOND]

The real redirector (gunicorn, 2 workers x 16 threads, the dashboard on with one scrypt
user as `engage dashboard-user` makes it) behind the sandbox nginx, all private on
loopback. Clicks on stored links (closed loop, ``--clickers`` threads) are timed in three
phases: quiet; while ``--flooders`` threads (in another process) send wrong API keys to
/api/ as fast as the answers come (the cost of the requests alone); and while they send
wrong Basic logins to /dashboard, every request from a /24 of its own, so the
per-network limiter never stops them and only the host-wide hashing cap bounds the CPU
(the worst case; issue 16: "the click p90 stays under 3x its quiet value during the
login flood"). Prints click p50/p90/p99 and clicks/s per phase, the flood's answers by
status and the CPU seconds the gunicorn processes used. Sources rotate over many 127.x
addresses so nginx's per-address limit_req (20 r/s) does not answer the load itself.
"""
from __future__ import annotations

import argparse
import base64
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.dashboard.passwords import make_hash  # noqa: E402
from engage.store.links import (  # noqa: E402
    Link,
    LinkStore,
    MessageRecord,
    Template,
    click_token,
    new_message_key,
)
from support.procs import NginxProxy, Redirector, RedisServer, free_port, http_get  # noqa: E402

API_KEY = "bench-key-abcdefghijklm"


def store_links(url: str, count: int = 200) -> list[str]:
    store = LinkStore(redis.Redis.from_url(url), "engage:")
    template = Template(links=(Link("https://example.com/landing?x=1"),), campaign_id="bench")
    tokens = []
    for _ in range(count):
        key = new_message_key()
        store.register(key, template, MessageRecord(
            rcpt_to=("r@example.com",), mail_from="b@example.com", subject="s",
            message_id=f"<{key}@x>", queue_id="Q", injection_time=int(time.time()),
            metadata={}, template_id=template.template_id))
        tokens.append(click_token(key, template.template_id, 0))
    return tokens


def cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (gunicorn's master and workers), from /proc."""
    total = 0.0
    tick = 100.0
    for task in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{task}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def clicks(base: str, tokens: list[str], threads: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def run(number: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            source = f"127.200.{number}.{n % 250 + 1}"
            started = time.perf_counter()
            status = http_get(f"{base}/c/{tokens[n % len(tokens)]}", source=source)[0]
            elapsed = time.perf_counter() - started
            if status == 302:
                latencies.append(elapsed)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def flood(base: str, kind: str, threads: int, rate: float, stop: float, answers: Any) -> None:
    """Wrong credentials as fast as the answers come until ``stop`` (monotonic), each
    request from a /24 of its own: ``login`` (Basic, /dashboard: a password hash each,
    as far as the cap lets it) or ``api-key`` (a wrong key on /api/: no hash); ``rate``
    requests/s in all (0: no pause)."""
    def run(number: int) -> None:
        n, due = 0, time.monotonic()
        while time.monotonic() < stop:
            n += 1
            if rate:
                due += threads / rate
                time.sleep(max(0.0, due - time.monotonic()))
            if kind == "login":
                guess = base64.b64encode(f"ada:guess-{number}-{n}".encode()).decode()
                path, headers = "/dashboard", {"Authorization": f"Basic {guess}"}
            else:
                path, headers = "/api/v1/events/message", {"Authorization": f"wrong-{n}"}
            source = f"127.{10 + number}.{n % 250}.1"
            try:
                status = http_get(f"{base}{path}", headers, source=source)[0]
            except OSError:
                status = 0
            answers[status] = answers.get(status, 0) + 1
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def flooding(base: str, kind: str, threads: int, rate: float, seconds: float
             ) -> tuple[Any, Any]:
    """The flood in another process (its threads would take the clickers' GIL)."""
    manager = multiprocessing.Manager()
    answers = manager.dict()
    process = multiprocessing.Process(
        target=flood, args=(base, kind, threads, rate, time.monotonic() + seconds, answers))
    process.start()
    return process, answers


def show(name: str, latencies: list[float], seconds: float) -> float:
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    print(f"{name:>6}: {len(ordered) / seconds:7.0f} clicks/s  p50 {p(0.5):6.1f} ms  "
          f"p90 {p(0.9):6.1f} ms  p99 {p(0.99):7.1f} ms  (mean {statistics.mean(ordered) * 1000:.1f})")
    return p(0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flooders", type=int, default=16)
    parser.add_argument("--clickers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0,
                        help="flood requests/s in all (default 0: as fast as answered)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-login-"))
    server = RedisServer(work / "redis").start()
    port = free_port()
    proxy = NginxProxy(work / "nginx", f"127.0.0.1:{port}")
    env = {"ENGAGE_REDIS_URL": server.url, "ENGAGE_API_KEYS": API_KEY,
           "ENGAGE_TRACKING_URL": proxy.url, "ENGAGE_PROXY_HOPS": "1",
           "ENGAGE_RATE_LIMIT": "0", "ENGAGE_LOG_LEVEL": "WARNING",
           "ENGAGE_DASHBOARD_ENABLED": "yes",
           "ENGAGE_DASHBOARD_USERS": f"ada:{make_hash('the real password')}"}
    redirector = Redirector(env, work / "gunicorn.log", port, workers=2, threads=16)
    try:
        redirector.start()
        proxy.start()
        tokens = store_links(server.url)
        clicks(proxy.url, tokens, args.clickers, 1.0)  # warm up
        assert redirector.proc is not None
        quiet = 0.0
        for kind in ("quiet", "api-key", "login"):
            cpu_before = cpu_seconds(redirector.proc.pid)
            process = answers = None
            if kind != "quiet":
                process, answers = flooding(proxy.url, kind, args.flooders, args.rate,
                                            args.seconds + 1)
                time.sleep(0.5)
            p90 = show(kind, clicks(proxy.url, tokens, args.clickers, args.seconds), args.seconds)
            if process is not None:
                process.join(30)
                print(f"        flood answers {dict(sorted(answers.items()))}; gunicorn CPU "
                      f"{cpu_seconds(redirector.proc.pid) - cpu_before:.1f} s; click p90 "
                      f"{p90 / quiet:.2f}x quiet")
            else:
                quiet = p90
    finally:
        proxy.stop()
        redirector.stop()
        server.stop()


if __name__ == "__main__":
    main()
