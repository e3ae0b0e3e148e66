#!/usr/bin/env python3
"""Redirector benchmark, a script (not a test) that prints figures; loopback only.

    python3 tests/bench/bench_redirector.py [--seconds 10] [--connections 64] [--events 1000000]
        [--workers gthread:2:16] [--before main]

1. Clicks, side by side in one run: nginx ``return 302`` (the machine's ceiling); for each
   gunicorn worker setting, a bare WSGI app returning a fixed 302 and one doing a Redis
   round trip first (tests/bench/bare_wsgi.py), the redirector's ``GET /c/<token>``
   (random tokens of 2000 stored messages, events recorded, access log on) under the same
   gunicorn settings, and with ``--before <git rev>`` the redirector of that revision too.
   Requests/s, p50, p99, the ratio to the bare app and to nginx; CPU ms per request of
   gunicorn (all its processes) and of redis-server, which a busy shared machine disturbs
   less than requests/s, and the µs Redis spent in the scripts (or GETs) per request
   (INFO commandstats, steadier still); then "paced": 1000 clicks one at a time, each
   on a new connection, 2 ms apart (p50/p99 ms: what one click waits on, unsaturated).
   The event streams must grow by at least the 302s counted.
   Load from wrk (Debian's ``wrk``); without it a Python load generator (much weaker).
2. Events API: latency of filtered queries through gunicorn over ``--events`` stored events.
nginx and wrk are installed with apt-get when missing and we are root. Every server it
starts (redis-server, gunicorn, nginx) is private, on 127.0.0.1, and stopped at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))

import redis  # noqa: E402

from engage.store import keys  # noqa: E402
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
from support.procs import RedisServer, free_port, stop_process  # noqa: E402

API_KEY = "bench-key-abcdefghijklm"
WORKERS = [("sync", 4, 1), ("sync", 8, 1), ("gthread", 2, 4), ("gthread", 2, 16),
           ("gthread", 4, 8)]


def ensure_tools() -> None:
    missing = [pkg for pkg, binary in (("nginx", "nginx"), ("wrk", "wrk"))
               if not shutil.which(binary) and not os.path.exists(f"/usr/sbin/{binary}")]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        if subprocess.call(["apt-get", "install", "-y", *missing], **quiet) != 0:
            subprocess.call(["apt-get", "update"], **quiet)
            subprocess.call(["apt-get", "install", "-y", *missing], **quiet)


def wait_http(port: int, path: str, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def start_redis(directory: str) -> RedisServer:
    """AOF off, as these figures have always been taken: the click path, not the disk."""
    return RedisServer(Path(directory) / "redis", extra_args=["--appendonly", "no"]).start()


def register_links(client: redis.Redis[bytes], messages: int = 2000) -> list[str]:
    store = LinkStore(client)
    template = Template(links=tuple(Link(f"https://example.com/p{i}?utm_source=bench&x={i}")
                                    for i in range(5)), campaign_id="bench",
                        friendly_from="news@example.com", sending_domain="example.com")
    tokens = []
    for n in range(messages):
        key = new_message_key()
        store.register(key, template, MessageRecord(
            rcpt_to=(f"user{n}@example.com",), subject="Bench", message_id=f"<{n}@bench>",
            injection_time=int(time.time()), template_id=template.template_id))
        tokens += [click_token(key, template.template_id, i) for i in range(5)]
    return tokens


def start_gunicorn(redis_port: int, worker: str, workers: int, threads: int,
                   log: Path, app: str = "engage.web.app:create_app()", tree: Path = ROOT
                   ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    path = os.pathsep.join((str(tree / "redirector"), str(ROOT / "tests/bench")))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": path,
           "ENGAGE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "ENGAGE_API_KEYS": API_KEY,
           "ENGAGE_TRACKING_URL": f"http://127.0.0.1:{port}",
           "ENGAGE_RATE_LIMIT": "1000000",  # counted (as deployed) but never reached
           "ENGAGE_CONFIG": os.devnull}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "etc/engage/gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{port}", "-k", worker, "-w", str(workers),
             "--threads", str(threads), app],
            env=env, stdout=out, stderr=out)
    wait_http(port, "/healthz")
    return process, port


def start_nginx(directory: str) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        return None
    port = free_port()
    conf = Path(directory) / "nginx.conf"
    conf.write_text(f"""daemon off; worker_processes auto; pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {directory}; proxy_temp_path {directory};
  fastcgi_temp_path {directory}; uwsgi_temp_path {directory}; scgi_temp_path {directory};
  server {{ listen 127.0.0.1:{port}; location / {{ return 302 https://example.com/p1?x=1; }} }} }}
""")
    process = subprocess.Popen([binary, "-c", str(conf), "-p", directory],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(port, "/")
    return process, port


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their children (gunicorn's workers)."""
    total = 0.0
    wanted = set(pids)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) in wanted or int(fields[1]) in wanted:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def run_wrk(port: int, seconds: int, connections: int, tokens_file: str) -> dict[str, float]:
    script = Path(tokens_file).with_suffix(".lua")
    script.write_text(f"""local tokens = {{}}
for line in io.lines("{tokens_file}") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
request = function() return wrk.format("GET", "/c/" .. tokens[math.random(#tokens)]) end
""")
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p99": float(p99.group(1)) * UNITS[p99.group(2)] if p99 else float("nan"),
            "p50": float(p50.group(1)) * UNITS[p50.group(2)] if p50 else float("nan"),
            "bad": float(bad.group(1)) if bad else 0.0, "errors": errors.group(1) if errors else "",
            "requests": float(total.group(1)) if total else 0.0}


def run_python_load(port: int, seconds: int, connections: int, tokens_file: str) -> dict[str, Any]:
    """A fallback load generator: threads with keep-alive connections, GIL-bound."""
    tokens = Path(tokens_file).read_text().split()
    latencies: list[float] = []
    deadline = time.time() + seconds
    lock = threading.Lock()

    def worker() -> None:
        mine: list[float] = []
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.time() < deadline:
            started = time.perf_counter()
            try:
                connection.request("GET", "/c/" + random.choice(tokens))
                connection.getresponse().read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=worker) for _ in range(min(connections, 32))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"rps": len(latencies) / seconds, "bad": 0.0, "errors": "",
            "requests": float(len(latencies)),
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
            "p50": latencies[len(latencies) // 2] if latencies else float("nan")}


def bench_clicks(args: argparse.Namespace, directory: str, redis_port: int) -> tuple[str, int, int]:
    client = redis.Redis(port=redis_port)
    redis_pid = int(client.info("server")["process_id"])
    tokens_file = os.path.join(directory, "tokens.txt")
    Path(tokens_file).write_text("\n".join(register_links(client)) + "\n")
    load: Callable[..., dict[str, Any]] = run_wrk if shutil.which("wrk") else run_python_load
    print(f"\n== clicks: GET /c/<token>, {args.connections} connections, {args.seconds} s each, "
          f"load from {'wrk -t2' if load is run_wrk else 'Python threads (no wrk)'} ==")
    nginx_row: dict[str, Any] | None = None
    nginx = start_nginx(directory)
    if nginx:
        load(nginx[1], 2, args.connections, tokens_file)
        nginx_row = load(nginx[1], args.seconds, args.connections, tokens_file)
        stop_process(nginx[0])
    rows: list[tuple[str, tuple[str, int, int], dict[str, Any], list[tuple[str, dict[str, Any]]]]] = []
    apps = [("bare WSGI 302", "bare_wsgi:app", ROOT), ("bare + 1 Redis trip", "bare_wsgi:one_trip", ROOT)]
    if args.before:
        apps.append((f"engage /c/ at {args.before}", "engage.web.app:create_app()",
                     snapshot(args.before, directory)))
    apps.append(("engage /c/", "engage.web.app:create_app()", ROOT))
    for worker, workers, threads in workers_of(args.workers):
        name = f"{worker} -w{workers}" + (f" --threads {threads}" if threads > 1 else "")
        measured = []
        for label, app, tree in apps:
            process, port = start_gunicorn(redis_port, worker, workers, threads,
                                           Path(directory) / "gunicorn.log", app, tree)
            try:
                measured.append((label, measure(load, port, args, tokens_file, client,
                                                [process.pid], redis_pid)))
            finally:
                stop_process(process)
        rows.append((name, (worker, workers, threads), measured[0][1], measured))
    print_clicks(nginx_row, rows)
    # By clicks/s: the bare app's own figure swings most between runs (sync most of all).
    best = max(rows, key=lambda row: row[3][-1][1]["rps"])
    print(f"best gunicorn setting for clicks (clicks/s): {best[0]}")
    return best[1]


def paced(port: int, tokens_file: str, clicks: int = 1000, pause: float = 0.002
          ) -> tuple[float, float]:
    """(p50, p99) ms of clicks one at a time, each on a new connection, ``pause`` s apart:
    what one click waits on when the server is not saturated (under load, a keep-alive
    connection's next request also waits for the work its thread does after an answer)."""
    tokens = Path(tokens_file).read_text().split()
    latencies = []
    for _ in range(clicks):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.perf_counter()
        connection.request("GET", "/c/" + random.choice(tokens))
        connection.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
        connection.close()
        time.sleep(pause)
    latencies.sort()
    return latencies[clicks // 2], latencies[int(clicks * 0.99)]


def measure(load: Callable[..., dict[str, Any]], port: int, args: argparse.Namespace,
            tokens_file: str, client: redis.Redis[bytes], pids: list[int],
            redis_pid: int) -> dict[str, Any]:
    """One load run after a warm-up: its figures, CPU ms per request, events stored."""
    load(port, 2, args.connections, tokens_file)  # warm up
    before = stored_events(client)
    client.config_resetstat()
    cpu = cpu_seconds(pids), cpu_seconds([redis_pid])
    row = load(port, args.seconds, args.connections, tokens_file)
    time.sleep(0.5)  # the requests wrk gave up on at the end still finish
    row["stored"] = stored_events(client) - before
    done = max(row["requests"], 1) / 1000
    row["cpu"] = (cpu_seconds(pids) - cpu[0]) / done
    row["redis_cpu"] = (cpu_seconds([redis_pid]) - cpu[1]) / done
    stats = client.info("commandstats")  # the commands' own time, scripts included
    row["redis_us"] = sum(stat["usec"] for name, stat in stats.items()
                          if name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_get")) / done / 1000
    row["paced"] = paced(port, tokens_file)
    return row


def stored_events(client: redis.Redis[bytes]) -> int:
    """Entries of every shard's event stream."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shard_ids(layout1=True):
        pipe.xlen(keys.events("engage:", shard))
    return sum(pipe.execute())


def snapshot(revision: str, directory: str) -> Path:
    """The redirector of a git revision, extracted under ``directory`` (no worktree)."""
    tree = Path(directory) / "before"
    tree.mkdir(exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "redirector", "etc"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def workers_of(text: str) -> list[tuple[str, int, int]]:
    """``gthread:2:16,sync:4`` -> [("gthread", 2, 16), ("sync", 4, 1)]; '' -> WORKERS."""
    if not text:
        return WORKERS
    found = []
    for item in text.split(","):
        worker, workers, *threads = item.split(":")
        found.append((worker, int(workers), int(threads[0]) if threads else 1))
    return found


def print_clicks(nginx: dict[str, Any] | None,
                 rows: list[tuple[str, Any, dict[str, Any], list[tuple[str, dict[str, Any]]]]]
                 ) -> None:
    base = nginx["rps"] if nginx else 0.0
    print(f"{'server':52} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>8} {'x bare':>7} "
          f"{'p99/bare':>8} {'x nginx':>8} {'CPU ms':>6} {'redis':>6} {'cmd us':>6} "
          f"{'paced p50/p99':>13}  non-3xx  302s / events stored")
    if nginx:
        print(f"{'nginx return 302':52} {nginx['rps']:8.0f} {nginx['p50']:7.2f} "
              f"{nginx['p99']:8.2f} {'':7} {'':8} {1:8.4f} {'':6} {'':6} {'':6} {'':13}  "
              f"{nginx['bad']:7.0f}")
    for name, _, bare, measured in rows:
        for label, row in measured:
            ours = label.startswith("engage")
            to_nginx = f"{row['rps'] / base:8.4f}" if base else "     n/a"
            stored = (f"{row['requests'] - row['bad']:.0f} / {row['stored']}"
                      + ("" if row["stored"] >= row["requests"] - row["bad"] else "  MISSING")
                      if ours else "")
            print(f"{label + ', gunicorn ' + name:52} {row['rps']:8.0f} {row['p50']:7.2f} "
                  f"{row['p99']:8.2f} {row['rps'] / bare['rps']:7.3f} "
                  f"{row['p99'] / bare['p99']:8.2f} {to_nginx} {row['cpu']:6.3f} "
                  f"{row['redis_cpu']:6.3f} {row['redis_us']:6.1f} "
                  f"{row['paced'][0]:6.2f}/{row['paced'][1]:6.2f}  {row['bad']:7.0f}  {stored}  "
                  f"{row['errors']}")


CAMPAIGNS = [f"campaign-{n}" for n in range(20)]


def fake_event(n: int, now: float, keys_of: dict[int, str]) -> tuple[dict[str, Any], Resolved]:
    """Event n of a busy week: 200k messages, 100k recipients, campaign-0 has 40%; the
    message's key (registered on its first event) from ``keys_of``."""
    message = n // 5
    campaign = CAMPAIGNS[0] if message % 5 < 2 else CAMPAIGNS[message % 20]
    kind = ("open", "open", "initial_open", "open", "click")[n % 5]
    links = tuple(Link(f"https://example.com/offer/{i}?utm_campaign={campaign}", "offer")
                  for i in range(7))
    template = Template(links=links, campaign_id=campaign, tags=("news", "weekly"),
                        friendly_from="news@example.com", sending_domain="example.com")
    record = MessageRecord(rcpt_to=(f"user{message % 100_000}@example.net",),
                           mail_from="bounces@example.com", subject=f"Weekly news {message % 1000}",
                           message_id=f"<{message}.bench@example.com>", queue_id="4XyZ",
                           injection_time=int(now) - 3600, metadata={"user_id": message % 100_000},
                           template_id=template.template_id)
    resolved = Resolved(keys_of[message], template, record,
                        links[n % 7] if kind == "click" else None)
    facts = RequestFacts("198.51.100.23", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Bench",
                         "en-US,en;q=0.9")
    return build_event(kind, resolved, facts, now), resolved


def fill_events(client: redis.Redis[bytes], total: int) -> None:
    """``total`` events as the redirector stores them (referring to their messages, which
    the milter registered first), with the memory they and the messages take."""
    log, store, keys_of = EventLog(client), LinkStore(client), {}
    started = time.time()
    before = client.info("memory")["used_memory"]
    batch = 2000
    for first in range(0, total, batch):
        now = time.time()
        made = []
        for n in range(first, min(total, first + batch)):
            if n // 5 not in keys_of:
                keys_of[n // 5] = new_message_key()
                event, resolved = fake_event(n, now, keys_of)
                store.register(resolved.message_key, resolved.template, resolved.record)
            made.append(fake_event(n, now, keys_of))
        log.append_many([event for event, _ in made], resolved=[resolved for _, resolved in made])
        if first and first % 200_000 == 0:
            print(f"  ... {first} events stored ({time.time() - started:.0f} s)", flush=True)
    memory = client.info("memory")["used_memory"] - before
    print(f"stored {total} events of {len(keys_of)} messages in {time.time() - started:.0f} s "
          f"({total / (time.time() - started):.0f}/s); redis used_memory grew "
          f"{memory / 2**20:.0f} MiB ({memory / total:.0f} B per event, its message's share, "
          "stream, indexes)")


def timed_get(port: int, path: str) -> tuple[float, int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": API_KEY})
    response = connection.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return elapsed, response.status, json.loads(body)


def bench_events_api(args: argparse.Namespace, directory: str,
                     config: tuple[str, int, int]) -> None:
    server = start_redis(directory)
    redis_port = server.port
    client = redis.Redis(port=redis_port)
    try:
        print(f"\n== events API over {args.events} stored events (gunicorn {config[0]}) ==")
        fill_events(client, args.events)
        process, port = start_gunicorn(redis_port, *config, Path(directory) / "gunicorn-api.log")
        try:
            queries = {
                "no filter, per_page=1000": {"per_page": 1000},
                "events=click, per_page=1000": {"events": "click"},
                "campaigns=campaign-0 (40%), per_page=1000": {"campaigns": "campaign-0"},
                "campaigns=campaign-7, events=click, per_page=10000":
                    {"campaigns": "campaign-7", "events": "click", "per_page": 10000},
                "recipients=user4242@example.net": {"recipients": "user4242@example.net"},
                "messages=<4242.bench@example.com>": {"messages": "<4242.bench@example.com>"},
                "subjects='Weekly news 42', per_page=100": {"subjects": "Weekly news 42",
                                                            "per_page": 100},
                "campaigns=campaign-0 + recipients=... (scan)":
                    {"campaigns": "campaign-0", "recipients": "user4240@example.net"},
                "subjects + sending_domains (scan of 1 subject)":
                    {"subjects": "Weekly news 42", "sending_domains": "example.com"},
                "sending_domains only (scan of everything)": {"sending_domains": "example.com"},
            }
            print(f"{'query':52} {'median ms':>9} {'p95 ms':>8} {'max ms':>8} {'results':>7} "
                  f"{'total_count':>11}")
            for name, params in queries.items():
                path = "/api/v1/events/message?" + urlencode(params)
                runs = [timed_get(port, path) for _ in range(args.repeat)]
                times = sorted(run[0] for run in runs)
                status, body = runs[0][1], runs[0][2]
                count = len(body.get("results", [])) if status == 200 else f"{status}"
                total = body.get("total_count", body.get("errors", [{}])[0].get("param", ""))
                print(f"{name:52} {statistics.median(times):9.1f} "
                      f"{times[int(len(times) * 0.95) - 1]:8.1f} {times[-1]:8.1f} {count:>7} "
                      f"{total:>11}")
            # Deep paging: the fifth page through the cursor costs what the first does.
            path = "/api/v1/events/message?" + urlencode({"per_page": 1000})
            for _ in range(4):
                path = timed_get(port, path)[2]["links"]["next"]
            times = sorted(timed_get(port, path)[0] for _ in range(args.repeat))
            print(f"{'no filter, 5th page via cursor':52} {statistics.median(times):9.1f} "
                  f"{times[int(len(times) * 0.95) - 1]:8.1f} {times[-1]:8.1f}")
        finally:
            stop_process(process)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per load run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="runs per events API query")
    parser.add_argument("--skip-clicks", action="store_true")
    parser.add_argument("--before", default="",
                        help="a git revision whose redirector is measured too (e.g. main)")
    parser.add_argument("--workers", default="",
                        help="gunicorn settings to compare, e.g. gthread:2:16,sync:4 "
                             "(default: a spread of sync and gthread)")
    args = parser.parse_args()
    ensure_tools()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-redirector-") as directory:
        config = ("gthread", 2, 4)
        if not args.skip_clicks:
            server = start_redis(directory)
            try:
                config = bench_clicks(args, directory, server.port)
            finally:
                server.stop()
        if args.events:
            bench_events_api(args, directory, config)


if __name__ == "__main__":
    main()
