"""Milter throughput through a real sandbox Postfix, as ratios measured side by side.

Prints messages/s accepted by Postfix (smtp-source, 10 sessions, relaying to smtp-sink
with dumping off) for: no milter; engage-milter with tracking off (the cost of the
milter protocol and our callbacks); engage-milter tracking a 60 KB, 150-link newsletter.
Then the milter's own CPU milliseconds per message (from /proc), and the pure rewrite
cost against a bare stdlib ``email`` parse + ``as_bytes`` of the same message.
A benchmark, not a test: it prints figures and asserts nothing about time.
Run as root (Postfix): ``.venv/bin/python tests/bench/bench_milter.py [--messages N]``.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "redirector"), str(ROOT / "tests")]

from engage.settings import Settings  # noqa: E402
from engage_milter.plan import Envelope, plan_message  # noqa: E402
from newsletter import newsletter  # noqa: E402
from support.procs import free_port  # noqa: E402

SANDBOX = ROOT / "scripts" / "sandbox-postfix"


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def smtp_source(port: int, message: Path, count: int, sessions: int) -> float:
    start = time.perf_counter()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(count), "-f", "bench@shop.example",
                    "-t", "rcpt@example.net", "-F", str(message), f"127.0.0.1:{port}"], check=True)
    return count / (time.perf_counter() - start)


def rewrite_cost(raw: bytes, rounds: int = 200) -> tuple[float, float]:
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = [(k, str(v)) for k, v in email.message_from_bytes(head + b"\r\n\r\n").items()]
    settings = Settings(tracking_url="https://click.example.com")
    envelope = Envelope("bench@shop.example", ("rcpt@example.net",), "Q", 0)
    start = time.process_time()
    for _ in range(rounds):
        email.message_from_bytes(raw, policy=email.policy.compat32).as_bytes()
    baseline = (time.process_time() - start) / rounds * 1000
    start = time.process_time()
    for _ in range(rounds):
        plan_message(headers, body, envelope, settings, "A" * 16)
    return baseline, (time.process_time() - start) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="engage-bench-"))
    os.chmod(work, 0o755)
    procs: list[subprocess.Popen[bytes]] = []
    redis_port, sink_port, smtp_port, milter_port = (free_port() for _ in range(4))
    try:
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", str(work)],
                                      stdout=subprocess.DEVNULL))
        sink_user = ["-u", "nobody"] if os.geteuid() == 0 else []
        procs.append(subprocess.Popen(["smtp-sink", *sink_user, "-c", f"127.0.0.1:{sink_port}", "1024"],
                                      stdout=subprocess.DEVNULL))
        wait_port(redis_port)
        wait_port(sink_port)
        messages = {}
        for qp in (False, True):
            path = work / f"newsletter{'-qp' if qp else ''}.eml"
            path.write_bytes(newsletter(quoted_printable=qp))
            messages[qp] = path
        pf = work / "postfix"
        subprocess.run(["bash", str(SANDBOX), "start", "--relay", str(sink_port), str(pf),
                        str(smtp_port), "none", "-"], check=True, stdout=subprocess.DEVNULL)
        smtp_source(smtp_port, messages[False], 100, args.sessions)  # warm-up
        results = {"no milter": smtp_source(smtp_port, messages[False], args.messages, args.sessions)}
        runs = (("milter, tracking off", "no", "0"),
                ("tracked, rewrite in the milter", "yes", "0"),
                (f"tracked, {os.cpu_count()} rewrite workers", "yes", "auto"))
        for label, tracking, workers in runs:
            env = dict(os.environ, ENGAGE_MILTER_SOCKET=f"inet:{milter_port}@127.0.0.1", ENGAGE_MILTER_WORKERS=workers,
                       ENGAGE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                       ENGAGE_TRACKING_URL="https://click.example.com", ENGAGE_LOG_LEVEL="WARNING",
                       ENGAGE_OPEN_TRACKING=tracking, ENGAGE_CLICK_TRACKING=tracking,
                       PYTHONPATH=f"{ROOT / 'milter'}:{ROOT / 'redirector'}")
            milter = subprocess.Popen([sys.executable, "-m", "engage_milter.main"], env=env)
            procs.append(milter)
            wait_port(milter_port)
            subprocess.run(["bash", str(SANDBOX), "milter", str(pf), f"inet:{milter_port}@127.0.0.1"],
                           check=True, stdout=subprocess.DEVNULL)
            smtp_source(smtp_port, messages[False], 50, args.sessions)
            before = cpu_seconds(milter.pid)
            results[label] = smtp_source(smtp_port, messages[False], args.messages, args.sessions)
            cpu_ms = (cpu_seconds(milter.pid) - before) / args.messages * 1000  # workers excluded
            results[f"{label} cpu"] = cpu_ms
            milter.terminate()
            milter.wait(10)
            procs.remove(milter)
        base = results["no milter"]
        print(f"\nmilter throughput ({args.messages} messages of {messages[False].stat().st_size} bytes, "
              f"{args.sessions} sessions, {os.cpu_count()} cores)")
        for label in ("no milter", *(run[0] for run in runs)):
            extra = f"  milter CPU {results[label + ' cpu']:.2f} ms/msg" if label + " cpu" in results else ""
            print(f"  {label:34s} {results[label]:8.1f} msg/s  {results[label] / base:5.2f}x{extra}")
        floor = results["milter, tracking off"]
        for label in (run[0] for run in runs[1:]):
            print(f"  {label} / milter with tracking off: {results[label] / floor:5.2f}x")
        print("\nrewrite cost per message (plan_message vs stdlib email parse + as_bytes)")
        for qp, path in messages.items():
            baseline, ours = rewrite_cost(path.read_bytes())
            print(f"  {'quoted-printable' if qp else '8bit':17s} email {baseline:6.2f} ms   "
                  f"engage {ours:6.2f} ms   {ours / baseline:5.2f}x")
    finally:
        subprocess.run(["bash", str(SANDBOX), "stop", str(work / "postfix")], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for proc in procs:
            proc.terminate()


if __name__ == "__main__":
    main()
