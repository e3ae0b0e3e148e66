"""The rewrite pool: same plans as in-process, and a dead worker costs one message only."""
import os
import signal
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
