"""One rewrite worker process of the Planner (engage_milter.pool): spawned, fed messages
down its own pipe, each planned under the deadline the milter gives it; it leaves when
the pipe closes or the milter is gone."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from . import deadline
from .plan import Plan, plan_message

SPAWN = multiprocessing.get_context("spawn")  # never fork a process that runs libmilter's threads
KILL_AFTER = 2.0  # seconds past its deadline a worker may take to answer before it is killed


class WorkerError(Exception):
    """The worker failed, died or overran: this message is not planned."""

    def __init__(self, text: str, lost: bool = True, overran: bool = False) -> None:
        super().__init__(text)
        self.lost = lost  # the worker is gone (or must be), not merely the message
        self.overran = overran


class Worker:
    def __init__(self) -> None:
        self.conn, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=serve, args=(child, os.getpid()),
                                     name="engage-milter-rewrite", daemon=True)
        self.process.start()
        child.close()
        self.started = 0.0  # when its current message began (monotonic)
        self.evicted = False  # stopped to make room for other mail

    def call(self, args: tuple[Any, ...], timeout: float) -> Plan:
        """The plan for ``args``, made under a deadline ``timeout`` seconds away."""
        try:
            self.conn.send(args if args == ("ping",) else (*args, timeout))
            if not self.conn.poll(timeout + KILL_AFTER):
                raise WorkerError(f"rewrite worker {self.process.pid} took over {timeout:g} s", overran=True)
            status, answer = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerError(f"rewrite worker {self.process.pid} died: {exc!r}") from None
        if status == "timeout":
            raise WorkerError(f"rewrite worker {self.process.pid}: {answer}", lost=False, overran=True)
        if status != "ok":
            raise WorkerError(f"rewrite worker failed:\n{answer}", lost=False)
        plan: Plan = answer  # what serve sent: plan_message's result
        return plan

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        self.conn.close()  # a live worker sees EOF and leaves
        self.process.join(5)


def serve(conn: Connection, parent: int) -> None:
    """A worker: plan each message sent down the pipe until the milter closes it, each
    under the deadline the milter gives it. It keeps no scans: the bodies it gets are
    new ones, repeated ones stay in the milter."""
    exit_with_parent(parent)
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        if args == ("ping",):
            conn.send(("ok", None))
            continue
        try:
            *message, timeout = args
            answer: tuple[str, Plan | str | None]
            with deadline.within(timeout):
                answer = ("ok", plan_message(*message))
        except deadline.PlanTimeout as exc:
            answer = ("timeout", str(exc))
        except Exception:
            answer = ("error", traceback.format_exc())
        conn.send(answer)


def exit_with_parent(parent: int) -> None:
    """Leave when the milter is gone, even if it was SIGKILLed and the pipe is still
    held open by a sibling."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
