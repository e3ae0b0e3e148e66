"""Milter throughput through a real sandbox Postfix, as ratios measured side by side.

Prints messages/s accepted by Postfix (smtp-source, 10 sessions, relaying to smtp-sink
with dumping off) for: no milter; a pass-through pymilter milter that receives headers
and body and changes nothing (passthrough_milter.py, the floor of any Python milter);
the same milter sending back a tracked body it was given (the floor of any milter that
changes the body); engage-milter with tracking off; engage-milter tracking a 60 KB,
150-link newsletter with its scan cache off (every body treated as new, as personalised
mail is), rewriting in the milter process and in worker processes; and with its
defaults (a mailing: the body is scanned once, later messages get their tokens spliced
in). engage-milter is started as operators start it: a settings file plus ENGAGE_*
environment (PYTHONPATH only picks this checkout's code). With each run: CPU
milliseconds per message of the milter process, of its workers and of the whole
pipeline (from /proc), and how idle the machine was. Then a dumped sample (smtp-sink
-d) is checked: every link of every sample message must be tracked, each tracked URL
must resolve in Redis to the URL it replaced, and the pixels must be there, so a fast
but broken milter cannot score. Last, the pure rewrite cost (plan_message, scanning a
new body and from the cache) against a bare stdlib ``email`` parse + ``as_bytes`` of
the same message, for the 8bit newsletter and its quoted-printable twin.
``--py-spy FILE`` records the last run's milter and workers and prints where they spend
CPU. A benchmark, not a test: it prints figures and asserts nothing about time.
Run as root (Postfix): ``.venv/bin/python tests/bench/bench_milter.py [--messages N]``.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import html
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "redirector"), str(ROOT / "tests")]

import redis  # noqa: E402

from engage.settings import Settings  # noqa: E402
from engage.store.links import LinkStore  # noqa: E402
from engage_milter.plan import Envelope, ScanCache, plan_message  # noqa: E402
from newsletter import newsletter  # noqa: E402
from support.procs import free_port  # noqa: E402

SANDBOX = ROOT / "scripts" / "sandbox-postfix"
TRACKING_URL = "https://click.example.com"
HREF = re.compile(r'href="([^"]*)"')
TEXT_URL = re.compile(r"https?://\S+")
SETTINGS = """\
[milter]
socket = inet:{milter_port}@127.0.0.1
[redis]
url = redis://127.0.0.1:{redis_port}/0
[tracking]
url = {tracking_url}
[log]
level = WARNING
"""


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """user + system CPU of pid; with reaped, plus that of the children it waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(v) for v in fields[11:15 if reaped else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: list[int]) -> float:
    """CPU of whole process trees: live processes plus the children they reaped (Postfix's
    master reaps its smtpd, cleanup and smtp processes; a delta over a run counts them)."""
    return sum(cpu_seconds(pid, reaped=True) for root in roots for pid in [root, *children(root)])


def own_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # smtp-source, once it has exited
    return usage.ru_utime + usage.ru_stime


def children(pid: int) -> list[int]:
    """Every live descendant of pid (the rewrite workers, multiprocessing's helpers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        todo += kids
    return found


def idle_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values)


def smtp_source(port: int, message: Path, count: int, sessions: int) -> float:
    start = time.perf_counter()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(count), "-f", "bench@shop.example",
                    "-t", "rcpt@example.net", "-F", str(message), f"127.0.0.1:{port}"], check=True)
    return count / (time.perf_counter() - start)


def timed_run(port: int, message: Path, count: int, sessions: int, milter: Optional[int],
              pipeline: list[int]) -> dict[str, float]:
    """msg/s; CPU ms per message of the milter process, of its children, and of the whole
    pipeline (Postfix, smtp-source, smtp-sink, Redis, the milter and its workers)."""
    smtp_source(port, message, 50, sessions)  # warm-up: workers started, templates stored
    kids = children(milter) if milter else []
    roots = pipeline + ([milter] if milter else [])
    before = (cpu_seconds(milter) if milter else 0.0, sum(map(cpu_seconds, kids)), idle_ticks(),
              tree_cpu(roots) + own_children_cpu())
    rate = smtp_source(port, message, count, sessions)
    idle, total = idle_ticks()
    return {
        "rate": rate,
        "cpu": (cpu_seconds(milter) - before[0]) / count * 1000 if milter else 0.0,
        "workers": (sum(map(cpu_seconds, kids)) - before[1]) / count * 1000,
        "pipeline": (tree_cpu(roots) + own_children_cpu() - before[3]) / count * 1000,
        "idle": (idle - before[2][0]) / max(1, total - before[2][1]),
    }


def plan_args(raw: bytes) -> tuple[list[tuple[str, str]], bytes, Envelope, Settings, str]:
    """plan_message's arguments for a raw message, as the milter would pass them."""
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = [(k, str(v)) for k, v in email.message_from_bytes(head + b"\r\n\r\n").items()]
    envelope = Envelope("bench@shop.example", ("rcpt@example.net",), "Q", 0)
    return headers, body, envelope, Settings(tracking_url=TRACKING_URL), "A" * 16


def rewrite_cost(raw: bytes, rounds: int = 30, repeats: int = 15) -> tuple[float, float, float]:
    """CPU ms of a stdlib parse + as_bytes, of plan_message scanning the body (a body seen
    for the first time), and of plan_message with the body's scan cached (every later
    message of a mailing): interleaved, the best of ``repeats`` rounds each, so load from
    elsewhere on the machine hits all three alike."""
    args = plan_args(raw)
    cache = ScanCache(1)
    runs = (lambda: email.message_from_bytes(raw, policy=email.policy.compat32).as_bytes(),
            lambda: plan_message(*args),
            lambda: plan_message(*args, cache=cache))
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            start = time.process_time()
            for _ in range(rounds):
                run()
            best[index] = min(best[index], (time.process_time() - start) / rounds * 1000)
    return best[0], best[1], best[2]


def tracked_body(raw: bytes) -> bytes:
    """The body engage-milter sends back for ``raw``, computed once, for the pass-through
    milter that only sends it: the floor of any milter that changes the body."""
    plan = plan_message(*plan_args(raw))
    assert plan.body is not None
    return plan.body


def profile_summary(raw: str, top: int = 25) -> str:
    """Per function (file:name): share of samples on the stack, and as the leaf."""
    total, inclusive, leaf = 0, {}, {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith("process ")]
        total += int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
        if frames:
            leaf[frames[-1]] = leaf.get(frames[-1], 0) + int(count)
    rows = sorted(inclusive, key=inclusive.get, reverse=True)  # type: ignore[arg-type]
    lines = [f"  {'on stack':>8s} {'leaf':>6s}  function ({total} samples)"]
    lines += [f"  {inclusive[f] / total:8.1%} {leaf.get(f, 0) / total:6.1%}  {f}" for f in rows[:top]]
    return "\n".join(lines)


def check_sample(dump: Path, count: int, original: bytes, store: LinkStore, timeout: float = 60) -> str:
    """Every link of every dumped message tracked, resolving to the URL it replaced."""
    deadline = time.time() + timeout
    while len(files := [p for p in dump.rglob("*") if p.is_file()]) < count and time.time() < deadline:
        time.sleep(0.2)
    if len(files) < count:
        raise SystemExit(f"sample: {len(files)} of {count} messages reached smtp-sink")
    parts = _parts(email.message_from_bytes(original))
    want_html = [html.unescape(u) for u in HREF.findall(parts["html"]) if u.startswith("http")]
    want_text = TEXT_URL.findall(parts["plain"])
    for path in files:
        got = _parts(email.message_from_bytes(path.read_bytes()))
        hrefs = [html.unescape(u) for u in HREF.findall(got["html"])]
        pixels = re.findall(r'<img src="' + re.escape(TRACKING_URL) + r'/[io]/([\w-]+)"', got["html"])
        for label, urls, want in (("html", [u for u in hrefs if u.startswith("http")], want_html),
                                  ("text", TEXT_URL.findall(got["plain"]), want_text)):
            resolved = [_resolve(store, url) for url in urls]
            if label == "html" and resolved and resolved[0] == TRACKING_URL + "/":
                resolved = resolved[1:]  # the trap link, when [verdicts] adds one
            if resolved != want:
                raise SystemExit(f"sample {path.name}: {label} links not all tracked: "
                                 f"{sum(a != b for a, b in zip(resolved, want))} differ, "
                                 f"{len(resolved)} found, {len(want)} expected")
        if len(pixels) != 2 or any(store.resolve(token) is None for token in pixels):
            raise SystemExit(f"sample {path.name}: open pixels missing or unknown")
    return (f"{len(files)} dumped messages: all {len(want_html)} HTML links and {len(want_text)} "
            f"text URLs tracked and resolving to the original URL, 2 pixels each")


def _parts(message: email.message.Message) -> dict[str, str]:
    return {part.get_content_subtype(): part.get_payload(decode=True).decode(part.get_content_charset())
            for part in message.walk() if part.get_content_maintype() == "text"}


def _resolve(store: LinkStore, url: str) -> str:
    prefix = TRACKING_URL + "/c/"
    if not url.startswith(prefix):
        return "untracked: " + url
    resolved = store.resolve(url[len(prefix):])
    return resolved.link.url if resolved is not None and resolved.link is not None else "unknown token"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="engage-bench-"))
        os.chmod(self.work, 0o755)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis_port, self.sink_port, self.smtp_port, self.milter_port = (free_port() for _ in range(4))
        self.sink: Optional[subprocess.Popen[bytes]] = None
        self.pf = self.work / "postfix"

    def pipeline(self, roots: list[int]) -> list[int]:
        assert self.sink is not None
        return [*roots, self.sink.pid]

    def start_sink(self, dump: Optional[Path] = None) -> None:
        if self.sink is not None:
            self.sink.terminate()
            self.sink.wait(10)
            self.procs.remove(self.sink)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        dump_args = ["-d", f"{dump}/%M."] if dump else []
        self.sink = subprocess.Popen(["smtp-sink", *user, *dump_args, "-c", f"127.0.0.1:{self.sink_port}", "1024"],
                                     stdout=subprocess.DEVNULL)
        self.procs.append(self.sink)
        wait_port(self.sink_port)

    def start_milter(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        milter = subprocess.Popen(argv, env=env)
        self.procs.append(milter)
        wait_port(self.milter_port)
        subprocess.run(["bash", str(SANDBOX), "milter", str(self.pf), f"inet:{self.milter_port}@127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL)
        return milter

    def stop_milter(self, milter: subprocess.Popen[bytes]) -> None:
        milter.terminate()
        milter.wait(10)
        self.procs.remove(milter)

    def engage_env(self, tracking: str, workers: str, cache: str) -> dict[str, str]:
        config = self.work / "engage.conf"
        config.write_text(SETTINGS.format(milter_port=self.milter_port, redis_port=self.redis_port,
                                          tracking_url=TRACKING_URL))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
        return dict(env, ENGAGE_CONFIG=str(config), ENGAGE_MILTER_WORKERS=workers, ENGAGE_REWRITE_CACHE=cache,
                    ENGAGE_OPEN_TRACKING=tracking, ENGAGE_CLICK_TRACKING=tracking,
                    PYTHONPATH=f"{ROOT / 'milter'}:{ROOT / 'redirector'}")

    def run(self) -> None:
        args = self.args
        self.procs.append(subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                            "--save", "", "--appendonly", "no", "--dir", str(self.work)],
                                           stdout=subprocess.DEVNULL))
        wait_port(self.redis_port)
        self.start_sink()
        messages = {}
        for qp in (False, True):
            path = self.work / f"newsletter{'-qp' if qp else ''}.eml"
            path.write_bytes(newsletter(quoted_printable=qp))
            messages[qp] = path
        subprocess.run(["bash", str(SANDBOX), "start", "--relay", str(self.sink_port), str(self.pf),
                        str(self.smtp_port), "none", "-"], check=True, stdout=subprocess.DEVNULL)
        message, count, sessions = messages[False], args.messages, args.sessions
        master = int((self.pf / "spool" / "pid" / "master.pid").read_text().split()[0])
        pipeline = [master, self.procs[0].pid]  # Postfix and Redis; the sink is added per run
        results = {"no milter": timed_run(self.smtp_port, message, count, sessions, None, self.pipeline(pipeline))}
        passthrough = [sys.executable, str(ROOT / "tests" / "bench" / "passthrough_milter.py"),
                       f"inet:{self.milter_port}@127.0.0.1"]
        milter = self.start_milter(passthrough, dict(os.environ))
        results["pass-through pymilter milter"] = timed_run(self.smtp_port, message, count, sessions, milter.pid,
                                                            self.pipeline(pipeline))
        self.stop_milter(milter)
        replacement = self.work / "tracked-body"
        replacement.write_bytes(tracked_body(message.read_bytes()))
        milter = self.start_milter([*passthrough, "--replace", str(replacement)], dict(os.environ))
        results["pass-through, sends a tracked body"] = timed_run(self.smtp_port, message, count, sessions,
                                                                  milter.pid, self.pipeline(pipeline))
        self.stop_milter(milter)
        engage = [sys.executable, "-m", "engage_milter.main"]
        runs = (("engage-milter, tracking off", "no", "auto", "16"),
                ("tracking, no cache, no workers", "yes", "0", "0"),
                (f"tracking, no cache, {os.cpu_count()} workers", "yes", "auto", "0"),
                ("tracking (defaults: cache, workers)", "yes", "auto", "16"))
        for label, tracking, workers, cache in runs:
            milter = self.start_milter(engage, self.engage_env(tracking, workers, cache))
            spy = self.py_spy(milter.pid) if label == runs[-1][0] and args.py_spy else None
            results[label] = timed_run(self.smtp_port, message, count, sessions, milter.pid, self.pipeline(pipeline))
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            if label == runs[-1][0]:
                sample = self.sample(messages[False])
            self.stop_milter(milter)
        base, floor = results["no milter"]["rate"], results["pass-through pymilter milter"]["rate"]
        changing = results["pass-through, sends a tracked body"]["rate"]
        print(f"\nmilter throughput ({count} messages of {message.stat().st_size} bytes, "
              f"{sessions} sessions, {os.cpu_count()} cores)")
        print(f"  {'run':34s} {'msg/s':>8s}  {'x none':>6s}  {'x pass':>6s}  {'x send':>6s}  milter CPU"
              f"  workers CPU  pipeline CPU  idle")
        for label, r in results.items():
            print(f"  {label:34s} {r['rate']:8.1f}  {r['rate'] / base:6.2f}  {r['rate'] / floor:6.2f}"
                  f"  {r['rate'] / changing:6.2f}  {r['cpu']:6.2f} ms   {r['workers']:6.2f} ms    "
                  f"{r['pipeline']:6.2f} ms   {r['idle']:4.0%}")
        print("  (CPU per message; pipeline = Postfix + smtp-source + smtp-sink + Redis + milter + workers;"
              " x send = against the pass-through milter that sends a tracked body)")
        print(f"  sample check: {sample}")
        if args.py_spy:
            print(f"\nwhere the milter and its workers spend CPU (py-spy, {args.py_spy}):")
            print(profile_summary(Path(args.py_spy).read_text()))
        print("\nrewrite CPU per message (plan_message vs stdlib email parse + as_bytes, interleaved, best of 15)")
        print(f"  {'':17s} {'email':>8s}  {'scanned':>8s} {'x email':>7s}  {'cached':>8s} {'x email':>7s}")
        for qp, path in messages.items():
            baseline, scanned, cached = rewrite_cost(path.read_bytes())
            print(f"  {'quoted-printable' if qp else '8bit':17s} {baseline:5.2f} ms  {scanned:5.2f} ms "
                  f"{scanned / baseline:6.2f}x  {cached:5.2f} ms {cached / baseline:6.2f}x")
        print("  (scanned: a body seen for the first time; cached: a body the worker's scan cache holds,"
              " as for every later message of a mailing)")

    def py_spy(self, pid: int) -> subprocess.Popen[bytes]:
        """py-spy recording the milter and its workers while they hold the GIL (CPU, not waits)."""
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                                "--subprocesses", "--gil", "-r", "200", "-f", "raw", "-o", self.args.py_spy],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        return spy

    def sample(self, message: Path, count: int = 20) -> str:
        dump = self.work / "dump"
        dump.mkdir()
        if os.geteuid() == 0:
            os.chown(dump, *_nobody())
        self.start_sink(dump)
        try:
            smtp_source(self.smtp_port, message, count, self.args.sessions)
            client = redis.Redis.from_url(f"redis://127.0.0.1:{self.redis_port}/0")
            return check_sample(dump, count, message.read_bytes(), LinkStore(client, "engage:"))
        finally:
            self.start_sink()

    def stop(self) -> None:
        subprocess.run(["bash", str(SANDBOX), "stop", str(self.pf)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for proc in self.procs:
            proc.terminate()


def _nobody() -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--py-spy", metavar="FILE", help="record the last run with py-spy into FILE")
    bench = Bench(parser.parse_args())
    try:
        bench.run()
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
