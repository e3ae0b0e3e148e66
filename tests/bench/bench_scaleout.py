"""Scale-out: more engage processes against one Redis, and engage on a Redis Cluster.

    python3 tests/bench/bench_scaleout.py [--part processes|cluster|all] [--messages N]
        [--seconds 10] [--connections 32] [--masters 1,3,6] [--cluster-messages 50000]
        [--procs 2] [--prefix engage:]

Part "processes" (ratios measured side by side in one run; loopback only):

1. Milter: two sandbox Postfix instances relaying to one smtp-sink (dumping off), each
   fed by its own smtp-source (5 sessions) at the same time, with the 71 KB, 300-link
   newsletter. Run "one milter": both Postfix use the same engage-milter process; run
   "two milters": each its own. Both milters rewrite in-process (``workers = 0``: one
   process is one core's worth of Python), against one redis-server.
2. Redirector: clicks (``GET /c/<token>``, events recorded) from two wrk processes at
   once (``-t1``, ``--connections`` each); run "one redirector": both at one gunicorn
   (gthread, 1 worker, 16 threads); run "two redirectors": one each.
For each run: msg/s or clicks/s, the ratio two/one, and the Redis main thread's CPU per
message or click (INFO cpu), with the rate one Redis core would allow at that cost.
Redis runs with AOF (appendfsync everysec) as in production. Prints figures, asserts
nothing. Run as root (Postfix). Every daemon is private, on 127.0.0.1, stopped at the end.

Part "cluster": for each of ``--masters``, a Redis Cluster of that many masters, each with
a replica (AOF on, the advised cluster-node-timeout 2000 and
cluster-require-full-coverage no); ``--cluster-messages`` messages registered
through LinkStore.register from ``--procs`` processes (10 campaigns of 5 links), then
clicks from ``wrk -t1 -c --connections`` for ``--seconds`` at one redirector (gunicorn,
2 workers x 8 threads) pointed at the cluster's URL with ``--prefix``. Per master: keys,
used_memory, what engage's data added, Redis main-thread CPU per message and per click
(INFO cpu before and after) and its share; their spread from equal; registrations/s and
clicks/s; and the ceiling: the busiest master at one core, from its CPU per unit.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "redirector"), str(ROOT / "tests"),
                str(ROOT / "tests" / "bench")]

import redis  # noqa: E402
from bench_milter import cpu_seconds, wait_port  # noqa: E402
from bench_redirector import register_links, start_gunicorn  # noqa: E402

from newsletter import newsletter  # noqa: E402
from support.procs import (  # noqa: E402
    ADVISED_CLUSTER_CONFIG,
    Redirector,
    RedisClusterServers,
    RedisServer,
    free_port,
    stop_process,
)

SANDBOX = ROOT / "scripts" / "sandbox-postfix"


def redis_cpu(client: redis.Redis[bytes]) -> float:
    """Seconds of CPU of Redis's main thread (the one that runs every command)."""
    info = client.info("cpu")
    return float(info["used_cpu_sys_main_thread"]) + float(info["used_cpu_user_main_thread"])


def measure(client: redis.Redis[bytes], count: Callable[[], int],
            load: Callable[[], None]) -> dict[str, float]:
    """Run ``load``; its rate (count delta per second), Redis CPU ms per counted unit and
    the commands that took most of Redis's command time (calls per unit, share)."""
    before_n = count()
    client.config_resetstat()
    before_cpu, started = redis_cpu(client), time.perf_counter()
    load()
    seconds = time.perf_counter() - started
    cpu = redis_cpu(client) - before_cpu
    done = max(count() - before_n, 1)
    # commandstats' usec is time inside the command, inflated when the box is busy: shares.
    stats = sorted(client.info("commandstats").items(), key=lambda item: -item[1]["usec"])
    total = sum(row["usec"] for _, row in stats) or 1
    top = ", ".join(f"{name.removeprefix('cmdstat_').upper()} x{row['calls'] / done:.1f} "
                    f"{row['usec'] / total:.0%}" for name, row in stats[:4])
    return {"rate": done / seconds, "done": done, "redis_ms": cpu / done * 1000,
            "redis_busy": cpu / seconds, "top": top}


def sent(client: redis.Redis[bytes]) -> int:
    """Messages the milters registered: the sum of the hourly sent counters."""
    return sum(int(value) for key in client.scan_iter(match="engage:agg:s:*")
               for value in client.hvals(key))


def smtp_sources(ports: list[int], message: Path, count: int, sessions: int) -> None:
    procs = [subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", str(count), "-f",
                               "bench@shop.example", "-t", "rcpt@example.net", "-F", str(message),
                               f"127.0.0.1:{port}"]) for port in ports]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("smtp-source failed")


def bench_milters(args: argparse.Namespace, work: Path, redis_port: int,
                  client: redis.Redis[bytes]) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    sink_port = free_port()
    sandboxes = [(work / f"postfix-{i}", free_port()) for i in range(2)]
    try:
        sink_user = ["-u", "nobody"] if os.geteuid() == 0 else []
        procs.append(subprocess.Popen(["smtp-sink", *sink_user, "-c", f"127.0.0.1:{sink_port}",
                                       "1024"], stdout=subprocess.DEVNULL))
        wait_port(sink_port)
        message = work / "newsletter.eml"
        message.write_bytes(newsletter())
        for directory, port in sandboxes:
            subprocess.run(["bash", str(SANDBOX), "start", "--relay", str(sink_port),
                            str(directory), str(port), "none", "-"], check=True,
                           stdout=subprocess.DEVNULL)
        milters = []
        for _ in range(2):
            socket = f"inet:{free_port()}@127.0.0.1"
            env = dict(os.environ, ENGAGE_MILTER_SOCKET=socket, ENGAGE_MILTER_WORKERS="0",
                       ENGAGE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                       ENGAGE_TRACKING_URL="https://click.example.com", ENGAGE_LOG_LEVEL="WARNING",
                       ENGAGE_CONFIG=os.devnull,
                       PYTHONPATH=f"{ROOT / 'milter'}:{ROOT / 'redirector'}")
            proc = subprocess.Popen([sys.executable, "-m", "engage_milter.main"], env=env)
            procs.append(proc)
            milters.append((socket, proc))
            wait_port(int(socket.split(":")[1].split("@")[0]))
        ports = [port for _, port in sandboxes]
        half = args.messages // 2
        results = {}
        for label, wiring in (("one milter", (0, 0)), ("two milters", (0, 1))):
            for (directory, _), index in zip(sandboxes, wiring):
                subprocess.run(["bash", str(SANDBOX), "milter", str(directory), milters[index][0]],
                               check=True, stdout=subprocess.DEVNULL)
            smtp_sources(ports, message, 25, 5)  # warm-up
            cpu_before = [cpu_seconds(proc.pid) for _, proc in milters]
            results[label] = measure(client, lambda: sent(client),
                                     lambda: smtp_sources(ports, message, half, 5))
            results[label]["milter_ms"] = sum(
                cpu_seconds(proc.pid) - before for (_, proc), before in zip(milters, cpu_before)
            ) / max(results[label]["done"], 1) * 1000
        print(f"\n== milter: 2 Postfix x 5 sessions, {2 * half} messages of "
              f"{message.stat().st_size} bytes per run, workers = 0, {os.cpu_count()} cores ==")
        print(f"{'run':14} {'msg/s':>8} {'x one':>6} {'milter CPU/msg':>15} "
              f"{'Redis CPU/msg':>14} {'Redis busy':>11} {'one Redis core allows':>22}")
        for label, row in results.items():
            print(f"{label:14} {row['rate']:8.1f} {row['rate'] / results['one milter']['rate']:6.2f} "
                  f"{row['milter_ms']:12.2f} ms {row['redis_ms']:11.3f} ms "
                  f"{row['redis_busy'] * 100:10.1f}% {1000 / row['redis_ms']:15.0f} msg/s")
        print(f"Redis command time, per message (two milters): {results['two milters']['top']}")
    finally:
        for directory, _ in sandboxes:
            subprocess.run(["bash", str(SANDBOX), "stop", str(directory)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for proc in procs:
            stop_process(proc, 10)


def wrk(port: int, seconds: int, connections: int, script: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
                             "-s", str(script), f"http://127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, text=True)


def bench_redirectors(args: argparse.Namespace, work: Path, redis_port: int,
                      client: redis.Redis[bytes]) -> None:
    tokens = work / "tokens.txt"
    tokens.write_text("\n".join(register_links(client)) + "\n")
    script = work / "tokens.lua"
    script.write_text(f"""local tokens = {{}}
for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
request = function() return wrk.format("GET", "/c/" .. tokens[math.random(#tokens)]) end
""")
    servers = [start_gunicorn(redis_port, "gthread", 1, 16, work / f"gunicorn-{i}.log")
               for i in range(2)]
    try:
        from engage.store import keys
        clicks = lambda: sum(int(client.xlen(keys.events("engage:", shard)))  # noqa: E731
                             for shard in keys.shard_ids())
        results = {}
        bad = {}
        for label, wiring in (("one redirector", (0, 0)), ("two redirectors", (0, 1))):
            ports = [servers[index][1] for index in wiring]
            for proc in [wrk(port, 2, args.connections, script) for port in ports]:
                proc.communicate()  # warm-up

            def load(ports: list[int] = ports, label: str = label) -> None:
                outs = [p.communicate()[0] for p in
                        [wrk(port, args.seconds, args.connections, script) for port in ports]]
                bad[label] = sum(int(m.group(1)) for out in outs
                                 for m in [re.search(r"Non-2xx or 3xx responses: (\d+)", out)] if m)
            results[label] = measure(client, clicks, load)
        print(f"\n== redirector: clicks from 2 wrk -t1 -c{args.connections}, {args.seconds} s per "
              "run, gunicorn gthread 1 worker x 16 threads each ==")
        print(f"{'run':16} {'clicks/s':>9} {'x one':>6} {'Redis CPU/click':>16} "
              f"{'Redis busy':>11} {'one Redis core allows':>22}  non-3xx")
        for label, row in results.items():
            print(f"{label:16} {row['rate']:9.0f} "
                  f"{row['rate'] / results['one redirector']['rate']:6.2f} "
                  f"{row['redis_ms']:13.3f} ms {row['redis_busy'] * 100:10.1f}% "
                  f"{1000 / row['redis_ms']:14.0f} clicks/s  {bad[label]}")
        print(f"Redis command time, per click (two redirectors): {results['two redirectors']['top']}")
    finally:
        for proc, _ in servers:
            stop_process(proc, 10)


# --------------------------------------------------------------------------- Redis Cluster

@dataclass
class Master:
    """One master's figures: keys, used_memory and main-thread CPU seconds, by moment."""

    address: str
    keys: dict[str, int] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


def sample(cluster: RedisClusterServers, masters: dict[str, Master], moment: str) -> None:
    for master in cluster.masters():
        client = redis.Redis(host=master.host, port=master.port)
        row = masters.setdefault(master.address, Master(master.address))
        row.keys[moment] = int(client.dbsize())
        row.memory[moment] = int(client.info("memory")["used_memory"])
        row.cpu[moment] = redis_cpu(client)
        client.close()


def streamed(cluster: RedisClusterServers, prefix: str) -> int:
    """Entries in every shard's events stream (``{p}{tag}events``; not the indexes or the
    pending clicks, streams too), master by master."""
    total = 0
    for master in cluster.masters():
        client = redis.Redis(host=master.host, port=master.port)
        total += sum(int(client.xlen(key)) for key in
                     client.scan_iter(match=f"{prefix}{{*}}events", count=1000, _type="stream"))
        client.close()
    return total


def register_share(url: str, prefix: str, first: int, count: int) -> list[str]:
    """Register ``count`` messages (10 campaigns of 5 links, one record each) as the
    milter does; one click token of each (a random link). Runs in a child process: the
    client side of a cluster pipeline is Python, and one process is one core."""
    from bench_memory import record_for

    from engage.store.links import Link, LinkStore, Template, click_token, new_message_key
    from engage.store.redisconn import connect

    store = LinkStore(connect(url), prefix)
    templates = [Template(links=tuple(Link(f"https://shop.example.com/c{c}/item-{n}?utm_source="
                                           f"newsletter") for n in range(5)),
                          campaign_id=f"campaign-{c}", sending_domain="shop.example.com")
                 for c in range(10)]
    tokens = []
    for number in range(first, first + count):
        template, key = templates[number % 10], new_message_key()
        store.register(key, template, record_for(number, template.template_id))
        tokens.append(click_token(key, template.template_id, number % 5))
    return tokens


def load_cluster(args: argparse.Namespace, work: Path, cluster: RedisClusterServers,
                 masters: dict[str, Master]) -> dict[str, float]:
    """Register, then click: rates, and the masters sampled before, between and after."""
    share = args.cluster_messages // args.procs
    sample(cluster, masters, "empty")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.procs, mp_context=multiprocessing.get_context("fork")) as pool:
        tokens = [token for part in pool.map(
            register_share, [cluster.url] * args.procs, [args.prefix] * args.procs,
            [n * share for n in range(args.procs)], [share] * args.procs) for token in part]
    registering = time.perf_counter() - started
    sample(cluster, masters, "registered")
    script = work / f"tokens-{len(masters)}.lua"
    (work / "tokens.txt").write_text("\n".join(random.sample(tokens, min(len(tokens), 20000))) + "\n")
    script.write_text(f"""local tokens = {{}}
for line in io.lines("{work / 'tokens.txt'}") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
request = function() return wrk.format("GET", "/c/" .. tokens[math.random(#tokens)]) end
""")
    redirector = Redirector({"ENGAGE_REDIS_URL": cluster.url, "ENGAGE_KEY_PREFIX": args.prefix,
                             "ENGAGE_RATE_LIMIT": "0", "ENGAGE_LOG_LEVEL": "WARNING",
                             "ENGAGE_TRACKING_URL": "https://click.example.com"},
                            work / f"gunicorn-{len(masters)}.log", workers=2, threads=8).start()
    try:
        wrk(redirector.port, 2, args.connections, script).communicate()  # warm-up
        sample(cluster, masters, "warm")
        before, started = streamed(cluster, args.prefix), time.perf_counter()
        out = wrk(redirector.port, args.seconds, args.connections, script).communicate()[0]
        clicking = time.perf_counter() - started
        time.sleep(0.5)  # what wrk gave up on at the end still finishes
        clicks = streamed(cluster, args.prefix) - before
        sample(cluster, masters, "clicked")
    finally:
        redirector.stop()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"messages": share * args.procs, "registrations/s": share * args.procs / registering,
            "clicks": clicks, "clicks/s": clicks / clicking, "non-3xx": int(bad.group(1)) if bad else 0}


def spread(values: list[float]) -> str:
    """The largest deviation from the mean, in percent."""
    mean = sum(values) / len(values)
    return f"{max(abs(v - mean) for v in values) / mean * 100 if mean else 0:.0f}%"


def print_cluster(count: int, rates: dict[str, float], masters: dict[str, Master]
                  ) -> dict[str, float]:
    """The table of one cluster; returns its Redis CPU per unit (all masters, and the
    busiest master's) for the ceilings."""
    rows = list(masters.values())
    per_msg = [(r.cpu["registered"] - r.cpu["empty"]) / rates["messages"] * 1000 for r in rows]
    per_click = [(r.cpu["clicked"] - r.cpu["warm"]) / max(rates["clicks"], 1) * 1000 for r in rows]
    data = [r.memory["clicked"] - r.memory["empty"] for r in rows]
    print(f"\n== {count} master(s) + {count} replica(s): {rates['messages']:.0f} messages "
          f"registered at {rates['registrations/s']:.0f}/s, {rates['clicks']:.0f} clicks at "
          f"{rates['clicks/s']:.0f}/s ({rates['non-3xx']:.0f} non-3xx) ==")
    print(f"{'master':22} {'keys':>9} {'used_memory':>12} {'data':>10} {'CPU/msg':>9} "
          f"{'CPU/click':>10} {'click share':>11}")
    total_click = sum(per_click) or 1
    for row, msg, click, grown in zip(rows, per_msg, per_click, data):
        print(f"{row.address:22} {row.keys['clicked']:9} {row.memory['clicked'] / 2**20:9.1f} MB "
              f"{grown / 2**20:7.1f} MB {msg:6.3f} ms {click:7.3f} ms {click / total_click:10.0%}")
    print(f"spread from equal: keys {spread([r.keys['clicked'] for r in rows])}, data "
          f"{spread(data)}, CPU per click {spread(per_click)}, per message {spread(per_msg)}")
    print(f"Redis CPU, all masters: {sum(per_click):.3f} ms per click, {sum(per_msg):.3f} ms "
          f"per message; the busiest master: {max(per_click):.3f} ms, {max(per_msg):.3f} ms")
    return {"click": sum(per_click), "click_max": max(per_click), "msg": sum(per_msg),
            "msg_max": max(per_msg), "clicks/s": rates["clicks/s"],
            "registrations/s": rates["registrations/s"]}


def bench_cluster(args: argparse.Namespace, work: Path) -> None:
    costs = {}
    for count in args.masters:
        cluster = RedisClusterServers(work / f"cluster-{count}", masters=count, replicas=1,
                                      config=ADVISED_CLUSTER_CONFIG).start()
        try:
            masters: dict[str, Master] = {}
            costs[count] = print_cluster(count, load_cluster(args, work, cluster, masters),
                                         masters)
        finally:
            cluster.stop()
    print(f"\n== Redis ceilings, prefix {args.prefix!r}, {os.cpu_count()} cores: the busiest "
          "master at one core (1000 ms / its CPU per unit); 'if even': the cluster's total "
          "CPU per unit split evenly over N masters ==")
    print(f"{'cluster':10} {'clicks/s':>9} {'msg/s':>8}   {'measured here (client-bound)':>30}")
    for count, cost in costs.items():
        print(f"{count:2} masters {1000 / cost['click_max']:9.0f} {1000 / cost['msg_max']:8.0f}   "
              f"{cost['clicks/s']:10.0f} clicks/s {cost['registrations/s']:8.0f} msg/s")
    for count, cost in costs.items():
        print(f"from the {count}-master run, if even: " + ", ".join(
            f"{n} masters {n * 1000 / cost['click']:.0f} clicks/s {n * 1000 / cost['msg']:.0f} msg/s"
            for n in (1, 3, 6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("processes", "cluster", "all"), default="all")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--masters", type=lambda text: [int(n) for n in text.split(",")],
                        default=[1, 3, 6])
    parser.add_argument("--cluster-messages", type=int, default=50_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--prefix", default="engage:")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="engage-bench-scaleout-"))
    os.chmod(work, 0o755)
    if args.part in ("processes", "all"):
        server = RedisServer(work / "redis").start()
        try:
            client = redis.Redis(port=server.port)
            bench_milters(args, work, server.port, client)
            bench_redirectors(args, work, server.port, client)
        finally:
            server.stop()
    if args.part in ("cluster", "all"):
        bench_cluster(args, work)


if __name__ == "__main__":
    main()
