"""Scale-out against one Redis, as ratios measured side by side in one run; loopback only.

    python3 tests/bench/bench_scaleout.py [--messages 1000] [--seconds 10] [--connections 32]

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
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "redirector"), str(ROOT / "tests"),
                str(ROOT / "tests" / "bench")]

import redis  # noqa: E402
from bench_milter import cpu_seconds, wait_port  # noqa: E402
from bench_redirector import register_links, start_gunicorn  # noqa: E402

from newsletter import newsletter  # noqa: E402
from support.procs import RedisServer, free_port, stop_process  # noqa: E402

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
        clicks = lambda: int(client.xlen("engage:events"))  # noqa: E731
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="engage-bench-scaleout-"))
    os.chmod(work, 0o755)
    server = RedisServer(work / "redis").start()
    redis_port = server.port
    try:
        client = redis.Redis(port=redis_port)
        bench_milters(args, work, redis_port, client)
        bench_redirectors(args, work, redis_port, client)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
