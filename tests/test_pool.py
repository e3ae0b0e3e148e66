"""The rewrite workers: same plans as in-process, and a failed, dead or stuck worker
costs one message only."""
import os
import signal
import time

import pytest

from engage.settings import Settings
from engage_milter.plan import Envelope, plan_message
from engage_milter.pool import Planner, WorkerError
from newsletter import newsletter
from oracle import milter_view


@pytest.fixture(scope="module")
def planner():
    planner = Planner(2)  # no scan cache: every message goes to a worker
    yield planner
    planner.close()


def args(key="K" * 16):
    headers, body = milter_view(newsletter(links=20))
    return headers, body, Envelope("b@example.com", ("r@example.net",), "Q1", 1), \
        Settings(tracking_url="https://t.example"), key


def test_pool_plans_exactly_as_in_process(planner):
    pooled, inline = planner(*args()), plan_message(*args())
    assert pooled.body == inline.body and pooled.body is not None
    assert pooled.template == inline.template and pooled.record == inline.record
    assert len(planner.pids()) == 2 and os.getpid() not in planner.pids()


def test_a_repeated_body_is_planned_in_the_milter_from_its_cache():
    planner = Planner(1, cache_size=4)
    try:
        plans = [planner(*args(key * 16)) for key in "ABCD"]
        assert [plan.body for plan in plans] == [plan_message(*args(key * 16)).body for key in "ABCD"]
        assert len({plan.body for plan in plans}) == 4  # each message its own tokens
        # the first went to the worker, the second was scanned here, the rest came from the cache
        assert len(planner._cache._entries) == 1
        os.kill(planner.pids()[0], signal.SIGSTOP)  # a stuck worker does not hold repeats up
        assert planner(*args("E" * 16)).body == plan_message(*args("E" * 16)).body
    finally:
        os.kill(planner.pids()[0], signal.SIGCONT)
        planner.close()


class _Crash:
    """Unpickled in the worker, it kills it: a crash in the middle of a message."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_worker_that_dies_mid_message_fails_that_message_only(planner):
    before = set(planner.pids())
    with pytest.raises(WorkerError, match="died"):
        planner(_Crash(), b"")
    after = set(planner.pids())
    assert len(after) == 2 and len(before - after) == 1
    assert planner(*args()).body is not None


def test_workers_killed_between_messages_are_replaced_before_use(planner):
    before = planner.pids()
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert [planner(*args()).body for _ in range(3)] == [plan_message(*args()).body] * 3
    assert len(planner.pids()) == 2 and not set(before) & set(planner.pids())


def test_an_exception_in_the_worker_is_reported_and_the_worker_kept(planner):
    before = set(planner.pids())
    with pytest.raises(WorkerError, match="TypeError") as failure:
        planner(None, b"", Envelope(), Settings(), "K" * 16)
    assert not failure.value.lost and set(planner.pids()) == before
    assert planner(*args()).body is not None


class _Stall:
    """Unpickled in the worker, it stalls it for a minute: a message that never ends."""

    def __reduce__(self):
        return time.sleep, (60,)


def test_a_stuck_worker_is_replaced():
    planner = Planner(1, timeout=0.5)
    try:
        first = planner.pids()
        with pytest.raises(WorkerError, match="took over 0.5 s"):
            planner(_Stall(), b"")
        assert planner.pids() != first and not _alive(first[0])
        planner.timeout = 60  # the new worker's first message waits for its imports
        assert planner(*args()).body == plan_message(*args()).body
    finally:
        planner.close()


def test_zero_workers_plans_in_process():
    planner = Planner(0)
    assert planner.pids() == [] and planner(*args()).body == plan_message(*args()).body


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
