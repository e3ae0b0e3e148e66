"""Run the rewrite in worker processes, off libmilter's threads and off the GIL.

libmilter calls every callback with the GIL held, so one milter process uses one core
however many SMTP sessions it serves; the rewrite (pure CPU, ~5-10 ms for a 60 KB
newsletter) goes to a pool of spawned processes instead, which also keeps HTML work out
of libmilter's threads. A worker that dies takes only its message with it: the caller
gets the exception (and delivers that message unchanged), the pool is rebuilt for the
next one. ``workers = 0`` plans in the calling thread.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Optional

from .plan import Plan, plan_message

log = logging.getLogger("engage_milter")


class Planner:
    """``planner(headers, body, envelope, settings, message_key) -> Plan``, in a pool."""

    def __init__(self, workers: int, timeout: float = 60.0) -> None:
        self.workers = workers
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pool: Optional[ProcessPoolExecutor] = None
        if workers:
            self._pool = self._new_pool()
            self._start_workers(self._pool)

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that runs libmilter's threads is unsafe.
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))

    def _start_workers(self, pool: ProcessPoolExecutor) -> None:
        """Start every worker now (the pool spawns one per busy submit), not later from
        a libmilter thread in the middle of a message."""
        for future in [pool.submit(time.sleep, 0.2) for _ in range(self.workers)]:
            future.result()

    def __call__(self, *args: Any) -> Plan:
        pool = self._pool
        if pool is None:
            return plan_message(*args)
        try:
            return pool.submit(plan_message, *args).result(self.timeout)
        except BrokenProcessPool:
            self._replace(pool)
            raise

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                log.error("a rewrite worker died; starting a new pool")
                self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """In each worker: leave when the milter is gone, even if it was SIGKILLed (the
    workers hold the task queue open themselves, so they would never see EOF)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
