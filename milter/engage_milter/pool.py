"""Run the rewrite in worker processes, off libmilter's threads and off the GIL, each
under a deadline, and never let a slow body hold the capacity other mail needs (one
worker process: engage_milter.worker).

libmilter calls every callback with the GIL held, so one milter process uses one core
however many SMTP sessions it serves; the rewrite goes to spawned worker processes
instead. Each worker has a pipe of its own, and the libmilter thread that needs one
writes to it and reads the answer itself. A body that came lately (and was planned
well) is planned in the calling thread from the milter's ScanCache: for the later
messages of a mailing only the tokens change. ``workers = 0`` plans every message in
the calling thread.

Deadlines and failures, everywhere a plan runs:
- a plan gets ``timeout`` seconds (checked inside the plan, in the worker and in the
  calling thread; a worker that does not answer 2 s later is killed). Past it the
  message is delivered unchanged (logged) and its body is remembered by digest: it is
  never planned again by this process. So is a body whose plan raised.
- a worker that dies mid-message: the message is tried once more in another worker;
  a body that kills two is delivered unchanged and remembered.
- capacity: when every worker is busy for GRACE seconds, another is started (up to
  ``workers + spare``); past that, the plan that has run longest, if over SLOW_AFTER
  seconds, is stopped (its message unchanged, its body remembered) to make room. Extra
  workers leave when idle ones are plenty again. A normal message waits at most
  GRACE + SLOW_AFTER + a worker's start-up, whatever the slow ones do.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any, Callable, Optional

from . import deadline
from .plan import Plan, ScanCache, plan_message, unchanged
from .worker import Worker, WorkerError

log = logging.getLogger("engage_milter")
GRACE = 0.2  # seconds every worker may be busy before another one is started
SLOW_AFTER = 2.0  # a plan running longer may be stopped to make room for other mail
REMEMBERED = 1024  # bodies whose plan failed, by digest


class Planner:
    """``planner(headers, body, envelope, settings, message_key) -> Plan``, in workers."""

    def __init__(self, workers: int, timeout: float = 30.0, cache_size: int = 0, spare: int = 4) -> None:
        self.workers = workers
        self.limit = workers + spare if workers else 0
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache = ScanCache(cache_size)  # used when planning in the calling thread
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # bodies planned well lately
        self._failed: OrderedDict[bytes, str] = OrderedDict()  # bodies never planned again
        self._idle: list[Worker] = []
        self._busy: list[Worker] = []
        self._count = 0  # workers alive or starting
        self._cond = threading.Condition()
        for _ in range(workers):
            self._count += 1
            self._idle.append(Worker())
        for worker in list(self._idle):  # started and importing now, not during a message
            worker.call(("ping",), max(timeout, 60.0))

    def __call__(self, headers: Any, body: bytes, envelope: Any, settings: Any, key: str) -> Plan:
        args = (headers, body, envelope, settings, key)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        with self._cond:
            failed = self._failed.get(digest)
        if failed is not None:
            return unchanged(headers, settings, f"body left alone: its rewrite {failed} before")
        if not self.workers or self._repeated(digest, body):
            return self._in_thread(args, digest)
        return self._in_worker(args, digest)

    def _plan_here(self, *args: Any) -> Plan:
        """plan_message with this thread's scan cache (looked up at each call)."""
        planner: Callable[..., Plan] = plan_message  # *args never reach its cache parameter
        return planner(*args, cache=self._cache)

    def _in_thread(self, args: tuple[Any, ...], digest: bytes) -> Plan:
        try:
            with deadline.within(self.timeout):
                plan = self._plan_here(*args)
        except deadline.PlanTimeout as exc:
            return self._give_up(args, digest, "ran over its deadline", str(exc))
        except Exception:
            return self._give_up(args, digest, "failed", traceback.format_exc())
        self._planned(digest, args[1])
        return plan

    def _in_worker(self, args: tuple[Any, ...], digest: bytes) -> Plan:
        until = time.monotonic() + self.timeout
        for attempt in (1, 2):
            worker = self._acquire(until)
            if worker is None:
                return self._give_up(args, digest, "found no worker in time", "")
            try:
                plan = worker.call(args, max(0.1, until - time.monotonic()))
            except WorkerError as exc:
                if worker.evicted:
                    self._discard(worker)
                    return self._give_up(args, digest, "was stopped to make room", str(exc))
                if exc.lost:
                    self._discard(worker, kill=True)
                else:
                    self._release(worker)
                if exc.overran:
                    return self._give_up(args, digest, "ran over its deadline", str(exc))
                if not exc.lost:
                    return self._give_up(args, digest, "failed", str(exc))
                if attempt == 1:
                    log.error("%s %s; trying the message again in another worker", _queue_id(args), exc)
                    continue
                return self._give_up(args, digest, "killed two workers", str(exc))
            self._release(worker)
            self._planned(digest, args[1])
            return plan
        raise AssertionError("unreachable")

    def _give_up(self, args: tuple[Any, ...], digest: bytes, what: str, detail: str) -> Plan:
        log.error("%s rewrite %s: delivering the message unchanged, and its body from now on. %s",
                  _queue_id(args), what, detail)
        with self._cond:
            self._failed[digest] = what
            while len(self._failed) > REMEMBERED:
                self._failed.popitem(last=False)
        return unchanged(args[0], args[3], f"body left alone: its rewrite {what}")

    def _repeated(self, digest: bytes, body: bytes) -> bool:
        """Whether this body was planned well lately (so its scan is, or will be, in the
        cache): a mailing's later messages are planned here, which costs less than a round
        trip to a worker; a body not planned yet goes to a worker."""
        if not self.cache_size or len(body) > ScanCache.MAX_BYTES:
            return False
        with self._cond:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
            return False

    def _planned(self, digest: bytes, body: bytes) -> None:
        if not self.cache_size or len(body) > ScanCache.MAX_BYTES:
            return
        with self._cond:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
            while len(self._seen) > self.cache_size:
                self._seen.popitem(last=False)

    # ------------------------------------------------------------------ capacity
    def _acquire(self, until: float) -> Optional[Worker]:
        """An idle worker; or a new one when all have been busy for GRACE seconds; or,
        at the limit, the place of the longest plan past SLOW_AFTER seconds."""
        waiting_since = time.monotonic()
        with self._cond:
            while True:
                now = time.monotonic()
                while self._idle:
                    worker = self._idle.pop()
                    if worker.process.is_alive():
                        return self._take(worker, now)
                    log.error("rewrite worker %s had died; starting a new one", worker.process.pid)
                    self._count -= 1
                    worker.stop(kill=True)
                    threading.Thread(target=self._replenish, name="engage-milter-respawn", daemon=True).start()
                busy_for = now - waiting_since
                if self._count < self.workers or (busy_for >= GRACE and self._count < self.limit):
                    self._count += 1
                    break
                if busy_for >= GRACE:
                    self._evict(now)
                if now >= until:
                    return None
                self._cond.wait(min(GRACE, max(0.01, until - now)))
        try:
            worker = Worker()
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            return self._take(worker, time.monotonic())

    def _take(self, worker: Worker, now: float) -> Worker:
        worker.started, worker.evicted = now, False
        self._busy.append(worker)
        return worker

    def _evict(self, now: float) -> None:
        """Stop the plan that has run longest, if it is past SLOW_AFTER (lock held)."""
        running = [w for w in self._busy if not w.evicted and now - w.started >= SLOW_AFTER]
        if running:
            victim = min(running, key=lambda w: w.started)
            victim.evicted = True
            log.warning("rewrite worker %s has run %.1f s while every worker is busy: stopping it",
                        victim.process.pid, now - victim.started)
            victim.process.kill()  # its caller sees the pipe close and gives the message up

    def _release(self, worker: Worker) -> None:
        with self._cond:
            if worker not in self._busy:  # close() took it
                return
            self._busy.remove(worker)
            if self._count > self.workers and len(self._idle) >= self.workers:
                self._count -= 1  # an extra worker, and enough idle ones: it leaves
                worker.stop()
            else:
                self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: Worker, kill: bool = False) -> None:
        if kill:
            log.error("rewrite worker %s lost; starting a new one", worker.process.pid)
        worker.stop(kill=True)
        with self._cond:
            if worker not in self._busy:  # close() took it
                return
            self._busy.remove(worker)
            self._count -= 1
            self._cond.notify_all()
            short = self._count < self.workers
        if short:  # back to full strength, without holding up this thread's message
            threading.Thread(target=self._replenish, name="engage-milter-respawn", daemon=True).start()

    def _replenish(self) -> None:
        with self._cond:
            if self._count >= self.workers:
                return
            self._count += 1
        try:
            worker = Worker()
            worker.call(("ping",), 60.0)  # imported before it takes a message
        except Exception:
            log.exception("a new rewrite worker did not start")
            with self._cond:
                self._count -= 1
            return
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def pids(self) -> list[int]:
        with self._cond:
            return [w.process.pid for w in self._idle + self._busy if w.process.pid]

    def close(self) -> None:
        with self._cond:
            idle, busy, self._idle, self._busy = self._idle, self._busy, [], []
        for worker in busy:
            worker.stop(kill=True)  # a message in flight is given up (its caller sees EOF)
        for worker in idle:
            worker.stop()


def _queue_id(args: tuple[Any, ...]) -> str:
    return str(getattr(args[2], "queue_id", "") or "-")
