"""A per-thread deadline that long loops check, so no plan runs unbounded anywhere.

The scanners are linear, but a large body still takes time, and a plan made in
libmilter's own thread cannot be interrupted from outside: it checks the deadline its
caller set (``with within(seconds):``) every so often and raises PlanTimeout past it.
Outside ``within`` nothing is checked.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional


class PlanTimeout(Exception):
    """The plan ran past its deadline; the message goes out unchanged."""


_local = threading.local()


@contextmanager
def within(seconds: Optional[float]) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now (None: no deadline)."""
    before = getattr(_local, "at", None)
    _local.at = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _local.at = before


def check() -> None:
    """Raise PlanTimeout if this thread's deadline has passed."""
    at = getattr(_local, "at", None)
    if at is not None and time.monotonic() > at:
        raise PlanTimeout(f"plan ran over its deadline by {time.monotonic() - at:.2f} s")
