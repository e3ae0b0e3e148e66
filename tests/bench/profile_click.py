#!/usr/bin/env python3
"""Where one click's time goes, in-process (no HTTP server): a script that prints figures.

    python3 tests/bench/profile_click.py [--clicks 3000] [--top 25] [--no-journal]

Instructions per click, which a busy shared machine does not disturb (callgrind counts
this process only, not redis-server): run ``--only 100`` and ``--only 600`` under
``valgrind --tool=callgrind --callgrind-out-file=/dev/null`` and divide the difference
of the two "Collected" counts by 500.

Calls the redirector's WSGI app directly with a ``GET /c/<token>`` environ against a
private redis-server: microseconds per click (wall clock, and this process's CPU: the
rest is waiting for Redis), Redis round trips per click (counted on the connection) and
Redis's own time in them (INFO commandstats), then cProfile's top functions by cumulative
and by own time. The answer's body is closed as a server does (the event is appended
then); ``--no-journal`` leaves the pending-clicks journal out, so the event is appended
before the answer, as before engage.pendingclicks.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "redirector"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # noqa: E402
from bench_redirector import register_links, start_redis  # noqa: E402
from redis.connection import Connection  # noqa: E402

from engage.settings import load  # noqa: E402
from engage.web.app import create_app  # noqa: E402


def environ(token: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": f"/c/{token}", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "198.51.100.7", "HTTP_HOST": "127.0.0.1:8080",
            "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}


GROUPS = (("socket send/recv (waiting for Redis)", ("sendall", "recv")),
          ("redis-py", ("/redis/",)), ("werkzeug/flask", ("/werkzeug/", "/flask/")),
          ("logging", ("logging/",)), ("json", ("json/", "_json")),
          ("engage", ("/engage/",)))


def print_groups(stats: pstats.Stats, clicks: int) -> None:
    """Own time per click (under cProfile, so inflated) by where the code lives."""
    totals: dict[str, float] = {}
    for (path, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path}:{name}"
        group = next((label for label, marks in GROUPS if any(m in where for m in marks)),
                     "other (stdlib, builtins)")
        totals[group] = totals.get(group, 0.0) + row[2]
    print("own time per click under cProfile, by where the code lives:")
    for group, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {group:40} {seconds / clicks * 1e6:7.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-journal", action="store_true",
                        help="append before answering, without the pending-clicks journal")
    parser.add_argument("--only", type=int, metavar="N",
                        help="only N clicks after the warm-up, no figures: for callgrind, whose "
                             "instruction counts of two N give instructions per click")
    args = parser.parse_args()
    sends = [0]
    original = Connection.send_packed_command

    def counted(self: Connection, command: Any, check_health: bool = True) -> None:
        sends[0] += 1
        original(self, command, check_health)
    Connection.send_packed_command = counted  # type: ignore[method-assign]
    if args.no_journal:
        from engage.web import clickpath
        clickpath.facts_text = lambda *args: ""  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="profile-click-") as directory:
        server = start_redis(directory)
        port = server.port
        try:
            tokens = register_links(redis.Redis(port=port), 500)
            os.environ.update({"ENGAGE_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                               "ENGAGE_RATE_LIMIT": "1000000", "ENGAGE_CONFIG": os.devnull})
            app = create_app(load(os.devnull))
            logging.getLogger("engage.access").handlers[:] = [logging.NullHandler()]
            logging.getLogger("engage.access").propagate = False
            statuses: dict[str, int] = {}

            def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
                statuses[status] = statuses.get(status, 0) + 1

            def run(n: int) -> None:
                for _ in range(n):
                    body = app(environ(random.choice(tokens)), start_response)
                    b"".join(body)
                    getattr(body, "close", lambda: None)()  # as the server does
            run(300)
            if args.only is not None:
                run(args.only)
                return
            sends[0] = 0
            client = redis.Redis(port=port)
            client.config_resetstat()
            started, cpu = time.perf_counter(), time.process_time()
            run(args.clicks)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            stats = client.info("commandstats")
            print(f"{elapsed / args.clicks * 1e6:.0f} us per click (one thread, no HTTP), "
                  f"{cpu / args.clicks * 1e6:.0f} us of it on this process's CPU; "
                  f"{sends[0] / args.clicks:.2f} Redis round trips per click; {statuses}")
            print("Redis's own time per click (INFO commandstats; the scripts include their "
                  "commands):")
            for name, stat in sorted(stats.items()):
                print(f"  {name.removeprefix('cmdstat_'):12} {stat['calls'] / args.clicks:5.2f} "
                      f"calls {stat['usec'] / args.clicks:7.1f} us")
            profile = cProfile.Profile()
            profile.enable()
            run(args.clicks)
            profile.disable()
            print_groups(pstats.Stats(profile), args.clicks)
            for order in ("cumulative", "tottime"):
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
                print(out.getvalue())
        finally:
            server.stop()


if __name__ == "__main__":
    main()
