"""The rewrite workers: same plans as in-process; a failed, dead or stuck worker costs one
message only, which goes out unchanged (a dead one is tried again first); such a body is
never planned again; slow messages never hold the capacity other mail needs."""
import os
import signal
import threading
import time

import pytest

from engage.settings import Settings
from engage_milter import deadline, pool
from engage_milter.plan import Envelope, plan_message
from engage_milter.pool import Planner
from newsletter import newsletter
from oracle import milter_view


@pytest.fixture(scope="module")
def planner():
    planner = Planner(2)  # no scan cache: every message goes to a worker
    yield planner
    planner.close()


def args(key="K" * 22):
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


def full_strength(planner: Planner, timeout: float = 20) -> list[int]:
    """The pids once the pool has replaced its lost workers (in the background)."""
    until = time.monotonic() + timeout
    while len(planner.pids()) < planner.workers and time.monotonic() < until:
        time.sleep(0.05)
    return planner.pids()


class _Crash:
    """Unpickled in the worker, it kills it: a crash in the middle of a message."""

    def __reduce__(self):
        return os._exit, (3,)


class _CrashOnce:
    """Unpickled in a worker: kills the first worker that reads it, then reads as headers."""

    def __init__(self, flag: str, headers) -> None:
        self.flag, self.headers = flag, headers

    def __reduce__(self):
        code = (f"__import__('os')._exit(3) if not __import__('os').path.exists({self.flag!r}) "
                f"and not open({self.flag!r}, 'w').close() else {self.headers!r}")
        return eval, (code,)


def crashing(body: bytes, headers=None):
    """args() whose headers kill the worker that unpickles them."""
    _, _, envelope, settings, key = args()
    return headers or [("X-Crash", _Crash())], body, envelope, settings, key


def test_a_worker_that_dies_mid_message_is_replaced_and_the_message_tried_again(planner, tmp_path):
    headers, body, envelope, settings, key = args()
    before = set(planner.pids())
    plan = planner(_CrashOnce(str(tmp_path / "crashed"), headers), body, envelope, settings, key)
    assert (tmp_path / "crashed").exists()  # one worker died on it
    assert plan.body == plan_message(*args()).body  # and the next one planned it
    after = set(full_strength(planner))
    assert len(after) == 2 and len(before - after) == 1


def test_a_body_that_kills_two_workers_goes_out_unchanged_and_is_remembered(planner):
    before = set(planner.pids())
    plan = planner(*crashing(b"kills workers"))
    assert plan.body is None and plan.notes == ["body left alone: its rewrite killed two workers"]
    still = set(full_strength(planner))
    assert len(still) == 2 and not before & still
    again = planner(*crashing(b"kills workers"))  # never planned again: no worker dies
    assert again.notes == ["body left alone: its rewrite killed two workers before"]
    assert set(planner.pids()) == still
    assert planner(*args()).body is not None


def test_workers_killed_between_messages_are_replaced_before_use(planner):
    before = planner.pids()
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert [planner(*args()).body for _ in range(3)] == [plan_message(*args()).body] * 3
    assert len(full_strength(planner)) == 2 and not set(before) & set(planner.pids())


def test_an_exception_in_the_worker_leaves_the_message_unchanged_and_the_worker_kept(planner):
    before = set(planner.pids())
    headers, body, envelope, settings, _ = args()
    plan = planner(headers, body + b" ", envelope, settings, None)  # no message key: TypeError
    assert plan.body is None and plan.notes == ["body left alone: its rewrite failed"]
    assert set(planner.pids()) == before
    assert planner(*args()).body is not None


class _Stall:
    """Unpickled in the worker, it stalls it for a minute: a message that never ends."""

    def __reduce__(self):
        return time.sleep, (60,)


def stalling(body: bytes):
    _, _, envelope, settings, key = args()
    return [("X-Stall", _Stall())], body, envelope, settings, key


def test_a_stuck_worker_is_replaced_and_its_body_remembered():
    planner = Planner(1, timeout=0.5)
    try:
        first = planner.pids()
        plan = planner(*stalling(b"stuck"))
        assert plan.body is None and plan.notes == ["body left alone: its rewrite ran over its deadline"]
        assert not _alive(first[0])
        planner.timeout = 60  # the new worker's first message waits for its imports
        assert planner(*args()).body == plan_message(*args()).body
        assert planner.pids() != first
        assert planner(*stalling(b"stuck")).notes == ["body left alone: its rewrite ran over its deadline before"]
    finally:
        planner.close()


def test_an_invalid_header_still_gets_its_550_when_the_body_is_left_alone():
    planner = Planner(1, timeout=0.5)
    try:
        planner(*stalling(b"stuck"))
        headers = [("X-MSYS-API", '{"metadata": "x"}')]
        plan = planner(headers, b"stuck", *args()[2:])
        assert plan.reject is not None and plan.reject.code == "550"
    finally:
        planner.close()


def test_the_plan_made_in_the_milter_from_its_cache_has_a_deadline_too(monkeypatch):
    planner = Planner(1, timeout=0.5, cache_size=4)
    try:
        assert planner(*args("A" * 16)).body is not None  # in the worker: this body plans well

        def endless(*_args, **_kwargs):
            while True:
                deadline.check()
        monkeypatch.setattr(pool, "plan_message", endless)
        plan = planner(*args("B" * 16))  # the second copy is planned here, in this thread
        assert plan.body is None and plan.notes == ["body left alone: its rewrite ran over its deadline"]
        monkeypatch.undo()
        assert planner(*args("C" * 16)).notes[0].startswith("body left alone")  # remembered
    finally:
        planner.close()


def test_slow_messages_never_hold_the_capacity_normal_mail_needs():
    """Four messages that never end are in flight on a two-worker pool; a normal one
    still gets its plan (through a started worker, or one freed from the longest slow
    plan), within the 5 s an SMTP client of the issue waited at most."""
    planner = Planner(2, timeout=30)
    results: dict[str, object] = {}

    def send(name, message):
        results[name] = planner(*message)

    try:
        slow = [threading.Thread(target=send, args=(f"slow{i}", stalling(b"slow %d" % i))) for i in range(4)]
        for thread in slow:
            thread.start()
        time.sleep(1.0)  # all four in flight
        normal = threading.Thread(target=send, args=("normal", args()))
        normal.start()
        normal.join(5)
        assert results.get("normal") is not None, "the normal message waited over 5 s"
        assert results["normal"].body == plan_message(*args()).body
    finally:
        planner.close()
        for thread in slow:
            thread.join(10)


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
