"""Plan time against body size: a normal newsletter and each adversarial family of issue 15.

For each family and size (64 KiB, 256 KiB, 1 MiB) prints plan_message's CPU time (best of
a few runs), the time per KiB, the ratio to the normal body of the same size, and how flat
the time per KiB stays from 64 KiB to 1 MiB. Then the first-scan cost of the 71 KB
newsletter against a stdlib email parse + as_bytes, measured as bench_milter.py measures
it (issue 9), and the memory a 50 MB body takes while it is planned (tracemalloc's peak
of what the plan allocates, plus the body itself). A benchmark, not a test: it prints
figures and asserts nothing. Run: ``.venv/bin/python tests/bench/bench_scan.py``.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "redirector"), str(ROOT / "tests"), str(ROOT / "tests" / "bench")]

from engage.settings import Settings  # noqa: E402
from engage_milter.plan import Envelope, plan_message  # noqa: E402
from newsletter import _html  # noqa: E402
from oracle import milter_view  # noqa: E402

SETTINGS = Settings(tracking_url="https://click.example.com")
SIZES = (64, 256, 1024)  # KiB


def message(body: bytes, ctype: str = "text/html") -> bytes:
    return (b"From: Shop <news@shop.example.com>\r\nTo: r@example.net\r\nSubject: bench\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: " + ctype.encode() + b"; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)


def lines(text: str, width: int = 76) -> bytes:
    data = text.encode()
    return b"\r\n".join(data[i:i + width] for i in range(0, len(data), width)) + b"\r\n"


def normal(size: int) -> bytes:
    """The newsletter's HTML (151 links per 60 KB), its rows repeated up to ``size``."""
    page = _html(150).replace("\n", "\r\n")
    head, _, rest = page.partition("<tr>")
    rows, _, tail = ("<tr>" + rest).rpartition("</table>")
    body = head
    while len(body) + len(rows) < size:
        body += rows
    return message((body + rows[:max(0, size - len(body) - len(tail) - 8)].rpartition("</tr>")[0]
                    + "</tr></table>" + tail).encode())


FAMILIES = {
    "normal newsletter": normal,
    "<a without >": lambda size: message(lines("<a " * (size // 3))),
    "unclosed <a href=\"": lambda size: message(lines('<a href="' * (size // 9))),
    "unclosed <!--": lambda size: message(lines("<!--" * (size // 4))),
    "unclosed <script": lambda size: message(lines("<script" * (size // 7))),
    "text URL + many )": lambda size: message(lines("http://a" + ")" * size), "text/plain"),
    "links on one long line": lambda size: message(('<a href="https://a.example/x">x</a>' * (size // 36)).encode()
                                                   + b"\r\n"),
}


def plan_ms(raw: bytes, repeats: int) -> float:
    headers, body = milter_view(raw)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        plan_message(headers, body, Envelope(), SETTINGS, "A" * 16)
        best = min(best, time.process_time() - start)
    return best * 1000


def table(repeats: int) -> None:
    print(f"{'family':24s} " + " ".join(f"{kib:>5d} KiB: ms  us/KiB  x normal" for kib in SIZES)
          + "  flat (1 MiB / 64 KiB)")
    normals: dict[int, float] = {}
    for name, make in FAMILIES.items():
        row, per_kib = [], []
        for kib in SIZES:
            ms = plan_ms(make(kib * 1024), repeats if kib < 1024 else max(1, repeats // 2))
            normals.setdefault(kib, ms)
            per_kib.append(ms * 1000 / kib)
            row.append(f"{ms:9.1f} {per_kib[-1]:7.1f} {ms / normals[kib]:8.2f}x")
        print(f"{name:24s} " + " ".join(row) + f"  {per_kib[-1] / per_kib[0]:10.2f}")


def first_scan() -> None:
    from bench_milter import rewrite_cost

    from newsletter import newsletter

    print("\nfirst scan vs stdlib email parse + as_bytes (bench_milter.rewrite_cost, CPU, best of 15)")
    for qp in (False, True):
        baseline, scanned, cached = rewrite_cost(newsletter(quoted_printable=qp))
        print(f"  {'quoted-printable' if qp else '8bit':17s} stdlib {baseline:5.2f} ms  first scan {scanned:5.2f} ms"
              f" {scanned / baseline:5.2f}x  cached {cached:5.2f} ms {cached / baseline:5.2f}x")


def memory(megabytes: int) -> None:
    raw = normal(megabytes * 1024 * 1024)
    headers, body = milter_view(raw)
    del raw
    tracemalloc.start()
    start = time.perf_counter()
    plan = plan_message(headers, body, Envelope(), SETTINGS, "A" * 16)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = len(body)
    print(f"\n{size / 1e6:.1f} MB body: planned in {elapsed:.1f} s (under tracemalloc), {plan.notes[-1][:40]}...;"
          f" peak allocations while planning {peak / 1e6:.1f} MB = {peak / size:.2f}x the body;"
          f" with the body itself {(peak + size) / size:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=50, help="body size of the memory run")
    args = parser.parse_args()
    table(args.repeats)
    first_scan()
    memory(args.megabytes)


if __name__ == "__main__":
    main()
