"""Run the rewrite in worker processes, off libmilter's threads and off the GIL.

libmilter calls every callback with the GIL held, so one milter process uses one core
however many SMTP sessions it serves; the rewrite (pure CPU, a few ms for a 60 KB
newsletter) goes to spawned worker processes instead, which also keeps HTML work out
of libmilter's threads. Each worker has a pipe of its own, and the libmilter thread
that needs one writes to it and reads the answer itself: no manager or feeder threads
in between (concurrent.futures' pool cost about 1 ms of the milter's CPU a message).
A worker that dies or overruns the timeout takes only its message with it: the caller
gets WorkerError (and delivers that message unchanged), and a new worker takes its
place. A body that came lately is planned in the calling thread from the milter's
ScanCache instead: for the later messages of a mailing only the tokens change, and
splicing them in costs less than the round trip to a worker. ``workers = 0`` plans
every message in the calling thread.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any, Callable

from .plan import Plan, ScanCache, plan_message

log = logging.getLogger("engage_milter")
SPAWN = multiprocessing.get_context("spawn")  # never fork a process that runs libmilter's threads


class WorkerError(Exception):
    """The worker failed, died or overran: this message is not planned. ``lost``: the
    worker is gone (or must be), not merely the message."""

    def __init__(self, text: str, lost: bool = True) -> None:
        super().__init__(text)
        self.lost = lost


class _Worker:
    def __init__(self) -> None:
        self.conn, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=_serve, args=(child, os.getpid()),
                                     name="engage-milter-rewrite", daemon=True)
        self.process.start()
        child.close()

    def call(self, args: tuple[Any, ...], timeout: float) -> Plan:
        try:
            self.conn.send(args)
            if not self.conn.poll(timeout):
                raise WorkerError(f"rewrite worker {self.process.pid} took over {timeout:g} s")
            ok, answer = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerError(f"rewrite worker {self.process.pid} died: {exc!r}") from None
        if not ok:
            raise WorkerError(f"rewrite worker failed:\n{answer}", lost=False)
        plan: Plan = answer  # what _serve sent: plan_message's result
        return plan

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        self.conn.close()  # a live worker sees EOF and leaves
        self.process.join(5)


class Planner:
    """``planner(headers, body, envelope, settings, message_key) -> Plan``, in workers."""

    def __init__(self, workers: int, timeout: float = 60.0, cache_size: int = 0) -> None:
        self.workers = workers
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache = ScanCache(cache_size)  # used when planning in the calling thread
        self._plan_here: Callable[..., Plan] = functools.partial(plan_message, cache=self._cache)
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # the latest bodies, for _repeated
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        for _ in range(workers):
            self._add()
        for worker in list(self._all):  # started and importing now, not during a message
            worker.call(("ping",), max(timeout, 60.0))

    def _add(self) -> None:
        worker = _Worker()
        with self._lock:
            self._all.append(worker)
        self._idle.put(worker)

    def __call__(self, *args: Any) -> Plan:
        if not self.workers or self._repeated(args[1]):
            return self._plan_here(*args)
        worker = self._idle.get()
        while not worker.process.is_alive():  # died between messages: no message lost
            self._replace(worker, f"rewrite worker {worker.process.pid} had died")
            worker = self._idle.get()
        try:
            plan = worker.call(args, self.timeout)
        except WorkerError as exc:
            if exc.lost:
                self._replace(worker, str(exc))
            else:
                self._idle.put(worker)  # an exception in plan_message: the worker is fine
            raise
        self._idle.put(worker)
        return plan

    def _repeated(self, body: bytes) -> bool:
        """Whether this body came lately (and is in the cache, or will be after this
        message): a mailing's later messages are planned here from the cached scan, which
        costs less than a round trip to a worker; a body seen once goes to a worker."""
        if not self.cache_size or len(body) > ScanCache.MAX_BYTES:
            return False
        with self._lock:
            if body in self._seen:
                self._seen.move_to_end(body)
                return True
            self._seen[body] = None
            while len(self._seen) > self.cache_size:
                self._seen.popitem(last=False)
            return False

    def _replace(self, worker: _Worker, why: str) -> None:
        log.error("%s; starting a new one", why)
        with self._lock:
            self._all.remove(worker)
        worker.stop(kill=True)
        self._add()

    def pids(self) -> list[int]:
        with self._lock:
            return [worker.process.pid for worker in self._all if worker.process.pid]

    def close(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop()


def _serve(conn: Connection, parent: int) -> None:
    """A worker: plan each message sent down the pipe until the milter closes it. It
    keeps no scans: the bodies it gets are new ones, repeated ones stay in the milter."""
    _exit_with_parent(parent)
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        if args == ("ping",):
            conn.send((True, None))
            continue
        try:
            answer: tuple[bool, Plan | str] = (True, plan_message(*args))
        except Exception:
            answer = (False, traceback.format_exc())
        conn.send(answer)


def _exit_with_parent(parent: int) -> None:
    """Leave when the milter is gone, even if it was SIGKILLed and the pipe is still
    held open by a sibling."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
