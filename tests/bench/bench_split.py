"""The cost of [milter] split_recipients: multi-recipient messages through two Postfix
instances, mode off vs on, as ratios measured side by side.

smtp-source submits M messages of R recipients each (the 60 KB newsletter, tracking on)
to a *client* Postfix that relays to the *engage* Postfix (engage-milter in
smtpd_milters), which relays to smtp-sink (no dumping). Timed from the first submission
until both queues are empty: messages/s and recipient copies/s for
- off: one transaction per message, one set of links (what split_recipients = no does);
- on, client smtp_destination_recipient_limit = 1 (README's prompt setup: no 452 ever);
- on, client at Postfix defaults: every RCPT after the first gets 452 and waits for a
  queue run (the sandbox's timers are 1 s; `postqueue -f` is NOT called).
A benchmark, not a test: it prints figures and asserts nothing about time.
Run as root (Postfix): ``.venv/bin/python tests/bench/bench_split.py [--messages M]``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "redirector"), str(ROOT / "tests")]

from newsletter import newsletter  # noqa: E402
from support.procs import (  # noqa: E402
    MilterProcess,
    PostfixSandbox,
    RedisServer,
    free_port,
    milter_argv,
    session_dir,
    stop_process,
)


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return subprocess.Popen(["smtp-sink", *user, f"127.0.0.1:{port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(client: PostfixSandbox, engage: PostfixSandbox, message: Path, count: int,
        rcpts: int, sessions: int, timeout: float) -> float:
    """Seconds from the first submission until both queues are empty."""
    start = time.perf_counter()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(count), "-r", str(rcpts),
                    "-f", "bench@shop.example", "-t", "rcpt@example.net", "-F", str(message),
                    f"127.0.0.1:{client.smtp_port}"], check=True)
    deadline = start + timeout
    while not (client.queue_empty() and engage.queue_empty()):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"queues not empty after {timeout}s:\n{client.queue()[-2000:]}")
        time.sleep(0.1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--recipients", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=5)
    args = parser.parse_args()
    work = session_dir("engage-bench-split-")
    message = work / "newsletter.eml"
    message.write_bytes(newsletter().replace(
        b"MIME-Version", b'X-MSYS-API: {"campaign_id": "bench"}\r\nMIME-Version', 1))
    sink_port = free_port()
    sink = start_sink(sink_port)
    redis = RedisServer(work / "redis").start()
    (work / "empty.conf").touch()
    engage = PostfixSandbox(work / "engage").start(None, relay_port=sink_port)
    client = PostfixSandbox(work / "client").start(None, relay_port=engage.smtp_port)
    # smtpd counts each 452 as a client error: README's settings for the engage listener.
    engage.postconf(smtpd_soft_error_limit="1001", smtpd_hard_error_limit="1001")
    results: dict[str, float] = {}
    runs = (("off", "no", "50"), ("on, client recipient limit 1", "yes", "1"),
            ("on, client at defaults (452 + queue runs)", "yes", "50"))
    try:
        for label, split, limit in runs:
            milter = MilterProcess(milter_argv(), {
                "ENGAGE_MILTER_SOCKET": f"inet:{free_port()}@127.0.0.1",
                "ENGAGE_REDIS_URL": redis.url, "ENGAGE_TRACKING_URL": "https://click.example.com",
                "ENGAGE_LOG_LEVEL": "WARNING", "ENGAGE_CONFIG": str(work / "empty.conf"),
                "ENGAGE_SPLIT_RECIPIENTS": split}, work / f"milter-{split}-{limit}.log").start()
            try:
                engage.set_milter(milter)
                client.postconf(smtp_destination_recipient_limit=limit)
                run(client, engage, message, 10, args.recipients, args.sessions, 600)  # warm-up
                results[label] = run(client, engage, message, args.messages, args.recipients,
                                     args.sessions, 1800)
            finally:
                milter.kill()
        size = message.stat().st_size
        print(f"\nsplit_recipients: {args.messages} messages x {args.recipients} recipients, "
              f"{size} bytes, {args.sessions} sessions, {os.cpu_count()} cores")
        base = results["off"]
        for label, _, _ in runs:
            seconds = results[label]
            print(f"  {label:42s} {args.messages / seconds:7.1f} msg/s "
                  f"{args.messages * args.recipients / seconds:7.1f} copies/s "
                  f"{base / seconds:5.2f}x off")
    finally:
        for sandbox in (client, engage):
            sandbox.stop()
        redis.stop()
        stop_process(sink)


if __name__ == "__main__":
    main()
