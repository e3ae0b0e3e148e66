"""The rewrite pool: same plans as in-process, and a dead worker costs one message only."""
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from engage.settings import Settings
from engage_milter.plan import Envelope, plan_message
from engage_milter.pool import Planner
from newsletter import newsletter
from oracle import milter_view


@pytest.fixture(scope="module")
def planner():
    planner = Planner(2)
    yield planner
    planner.close()


def args():
    headers, body = milter_view(newsletter(links=20))
    return headers, body, Envelope("b@example.com", ("r@example.net",), "Q1", 1), \
        Settings(tracking_url="https://t.example"), "K" * 16


def test_pool_plans_exactly_as_in_process(planner):
    pooled, inline = planner(*args()), plan_message(*args())
    assert pooled.body == inline.body and pooled.body is not None
    assert pooled.template == inline.template and pooled.record == inline.record
    assert os.getpid() not in {p.pid for p in planner._pool._processes.values()}


def test_a_killed_worker_fails_one_message_and_the_pool_recovers(planner):
    for process in list(planner._pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        planner(*args())
    assert planner(*args()).body is not None


def test_zero_workers_plans_in_process():
    planner = Planner(0)
    assert planner._pool is None and planner(*args()).body == plan_message(*args()).body


def _children(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found |= {int(child) for child in handle.read().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_leave_when_the_milter_is_killed(start_milter):
    """No orphans: a SIGKILLed milter's rewrite workers exit on their own."""
    milter = start_milter({"ENGAGE_MILTER_WORKERS": "2"})
    children = _children(milter.pid)
    assert len(children) >= 2  # the workers (and multiprocessing's resource tracker)
    milter.kill()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def test_sigterm_stops_the_milter_cleanly_with_workers(start_milter):
    milter = start_milter({"ENGAGE_MILTER_WORKERS": "2"})
    milter.terminate()
    assert milter.wait_exit(20) == 0
    assert "engage-milter stopped" in milter.log_text()
