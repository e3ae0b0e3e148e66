"""Project-wide fixtures that run REAL daemons on free 127.0.0.1 ports.

redis_server (session)      RedisServer: .url .port .host, .stop() / .start(), .running,
                            .log_text(). A test that stops it should start it again;
                            redis_client restarts it anyway for the next test.
redis_client (function)     redis.Redis on it, flushdb() before the test.
redis_cluster (session)     RedisClusterServers: 3 masters on loopback, no replicas;
                            .url (engage's redis+cluster://), .urls, .nodes, .flush().
failover_cluster (function) RedisClusterServers of 3 masters + 3 replicas, AOF on,
                            ADVISED_CLUSTER_CONFIG (cluster-node-timeout 2000,
                            cluster-require-full-coverage no), replicas in sync: a fresh
                            one per test
                            (the test may kill nodes); .masters(), .master_of(slot),
                            .replicas_of(node), .kill(node), .wait_ok(), .wait_in_sync(),
                            .checkpoint(master).
start_milter (function)     start_milter(env_overrides=None, *, argv=None, wait=True)
                            -> MilterProcess (.socket .postfix_socket .port .env .pid
                            .log_text() .alive() .stop() .kill() .wait_exit()).
                            Runs ``python -m engage_milter.main`` with ENGAGE_MILTER_SOCKET
                            on a free port, ENGAGE_REDIS_URL of redis_server,
                            ENGAGE_KEY_PREFIX=test:, ENGAGE_TRACKING_URL=http://track.test,
                            ENGAGE_LOG_LEVEL=DEBUG, ENGAGE_CONFIG=an empty file; overrides
                            win, a None value removes the variable. Stopped at teardown.
postfix_sandbox (function)  make_postfix(milter=None, *, private=False, relay_port=None)
                            -> PostfixSandbox (.smtp_port .sink .send() .wait_delivered()
                            .log_text() .queue()). One Postfix per session, switched to the
                            requested milter (MilterProcess, socket string or None) by
                            reload, queue purged and sink emptied for each test.
                            private=True (or relay_port) gives a separate instance,
                            stopped at the end of the test. Needs root: skipped otherwise
                            (a failure instead when CI is set).
start_redirector (function) start_redirector(env_overrides=None, *, nginx=False)
                            -> Redirector (.url .public_url .api_key .nginx .env
                            .log_text() .stop()). gunicorn with etc/engage/gunicorn.conf.py
                            on a free port, sharing redis_server and the milter's key
                            prefix test:, ENGAGE_API_KEYS=REDIRECTOR_API_KEY,
                            ENGAGE_TRACKING_URL=.public_url, ENGAGE_CONFIG=an empty file.
                            nginx=True puts a private nginx (etc/nginx/sandbox-nginx.conf.in,
                            .nginx: NginxProxy) in front and sets ENGAGE_PROXY_HOPS=1;
                            .public_url is then nginx's (skipped when nginx is missing).
                            Pass .public_url to start_milter as ENGAGE_TRACKING_URL.

Daemons live in /tmp/engage-tests-XXXX (kept, and printed, when a test failed).
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from support.procs import (
    ADVISED_CLUSTER_CONFIG,
    MilterProcess,
    NginxProxy,
    PostfixSandbox,
    ProcError,
    Redirector,
    RedisClusterServers,
    RedisServer,
    free_port,
    milter_argv,
    nginx_binary,
    session_dir,
)

try:  # a Flask test client closes the answer's body at once, as gunicorn does
    from support import closingclient
    closingclient.install()
except ImportError:  # no web extra: no Flask tests
    pass

_state: dict[str, Any] = {}
REDIRECTOR_API_KEY = "test-api-key-abcdefghij"


def _need(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing; in CI (CI set) fail instead, so nothing is
    silently skipped there."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engage_tmp() -> Iterator[Path]:
    """The session's daemon directory: /tmp/engage-tests-XXXX, mode 0755."""
    path = session_dir()
    _state["dir"] = path
    yield path


@pytest.fixture(scope="session")
def redis_server(engage_tmp: Path) -> Iterator[RedisServer]:
    _need(shutil.which("redis-server") is not None or os.path.exists("/usr/bin/redis-server"),
          "redis-server is not installed (run scripts/install-deps)")
    server = RedisServer(engage_tmp / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(engage_tmp: Path) -> Iterator[RedisClusterServers]:
    _need(shutil.which("redis-cli") is not None, "redis-cli is not installed (run scripts/install-deps)")
    cluster = RedisClusterServers(engage_tmp / "redis-cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterServers) -> Iterator[Any]:
    """A client of the session's Redis Cluster, flushed before the test."""
    from engage.store.redisconn import connect
    redis_cluster.flush()
    client = connect(redis_cluster.url)
    yield client
    client.close()


@pytest.fixture
def failover_cluster(engage_tmp: Path) -> Iterator[RedisClusterServers]:
    _need(shutil.which("redis-cli") is not None, "redis-cli is not installed (run scripts/install-deps)")
    index = _state["failover"] = _state.get("failover", 0) + 1
    cluster = RedisClusterServers(engage_tmp / f"redis-failover-{index}", masters=3, replicas=1,
                                  config=ADVISED_CLUSTER_CONFIG)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    import redis

    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def _milters() -> Iterator[list[MilterProcess]]:
    """Every milter of the session, reaped at the end. A graceful exit takes libmilter up
    to 5 s, so a test's teardown only sends SIGTERM; whatever is still running when the
    session ends gets one more second, then SIGKILL."""
    milters: list[MilterProcess] = []
    yield milters
    for milter in milters:
        milter.terminate()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and any(m.alive() for m in milters):
        time.sleep(0.05)
    for milter in milters:
        milter.kill()


@pytest.fixture
def start_milter(redis_server: RedisServer, engage_tmp: Path,
                 _milters: list[MilterProcess]) -> Iterator[Callable[..., MilterProcess]]:
    mine: list[MilterProcess] = []
    empty_config = engage_tmp / "empty.conf"
    empty_config.touch()

    def start(env_overrides: Optional[dict[str, Optional[str]]] = None, *,
              argv: Optional[list[str]] = None, wait: bool = True) -> MilterProcess:
        env: dict[str, Optional[str]] = {
            "ENGAGE_MILTER_SOCKET": f"inet:{free_port()}@127.0.0.1",
            "ENGAGE_REDIS_URL": redis_server.url,
            "ENGAGE_KEY_PREFIX": "test:",
            "ENGAGE_TRACKING_URL": "http://track.test",
            "ENGAGE_LOG_LEVEL": "DEBUG",
            "ENGAGE_CONFIG": str(empty_config),
        }
        env.update(env_overrides or {})
        picked = "ENGAGE_MILTER_SOCKET" not in (env_overrides or {})
        for attempt in range(3):
            clean = {k: v for k, v in env.items() if v is not None}
            index = len(_milters)
            milter = MilterProcess(argv or milter_argv(), clean, engage_tmp / f"milter-{index}.log")
            _milters.append(milter)
            mine.append(milter)
            try:
                return milter.start(wait=wait)
            except ProcError:
                # free_port's port was taken before the milter bound it (another test's
                # process under load): pick another, unless the test chose the socket.
                if not picked or attempt == 2 or "cannot opensocket" not in milter.log_text():
                    raise
                env["ENGAGE_MILTER_SOCKET"] = f"inet:{free_port()}@127.0.0.1"
        raise AssertionError("unreachable")

    yield start
    for milter in mine:
        milter.terminate()


@pytest.fixture(scope="session")
def _shared_postfix(engage_tmp: Path) -> Iterator[dict[str, Optional[PostfixSandbox]]]:
    holder: dict[str, Optional[PostfixSandbox]] = {"pf": None}
    yield holder
    if holder["pf"] is not None:
        holder["pf"].stop()


@pytest.fixture
def postfix_sandbox(engage_tmp: Path,
                    _shared_postfix: dict[str, Optional[PostfixSandbox]]
                    ) -> Iterator[Callable[..., PostfixSandbox]]:
    _need(os.geteuid() == 0, "needs root: Postfix's master must start as root "
          "(run `make test` as root or with sudo)")
    _need(os.path.exists("/usr/sbin/postfix"), "postfix is not installed (run scripts/install-deps)")
    privates: list[PostfixSandbox] = []

    def make(milter: Any = None, *, private: bool = False,
             relay_port: Optional[int] = None) -> PostfixSandbox:
        if private or relay_port:
            sandbox = PostfixSandbox(engage_tmp / f"postfix-private-{len(_state.setdefault('private', []))}")
            _state["private"].append(sandbox)
            privates.append(sandbox)
            return sandbox.start(milter, relay_port=relay_port)
        sandbox = _shared_postfix["pf"]
        if sandbox is None or not sandbox.started:
            sandbox = PostfixSandbox(engage_tmp / "postfix")
            _shared_postfix["pf"] = sandbox
            sandbox.start(milter)
        else:
            sandbox.set_milter(milter)
        sandbox.reset()
        return sandbox

    yield make
    for sandbox in privates:
        try:
            sandbox.stop()
        except ProcError as exc:  # do not hide the test's own result
            print(f"warning: {exc}")


@pytest.fixture
def start_redirector(redis_server: RedisServer, engage_tmp: Path
                     ) -> Iterator[Callable[..., Redirector]]:
    started: list[Any] = []
    empty_config = engage_tmp / "empty.conf"
    empty_config.touch()

    def start(env_overrides: Optional[dict[str, Optional[str]]] = None, *,
              nginx: bool = False) -> Redirector:
        if nginx:
            _need(nginx_binary() is not None, "nginx is not installed (run scripts/install-deps)")
        index = _state["redirectors"] = _state.get("redirectors", 0) + 1
        port = free_port()
        proxy = NginxProxy(engage_tmp / f"nginx-{index}", f"127.0.0.1:{port}") if nginx else None
        public_url = proxy.url if proxy else f"http://127.0.0.1:{port}"
        env: dict[str, Optional[str]] = {
            "ENGAGE_REDIS_URL": redis_server.url,
            "ENGAGE_KEY_PREFIX": "test:",
            "ENGAGE_TRACKING_URL": public_url,
            "ENGAGE_API_KEYS": REDIRECTOR_API_KEY,
            "ENGAGE_PROXY_HOPS": "1" if nginx else "0",
            "ENGAGE_LOG_LEVEL": "INFO",
            "ENGAGE_CONFIG": str(empty_config),
        }
        env.update(env_overrides or {})
        redirector = Redirector({k: v for k, v in env.items() if v is not None},
                                engage_tmp / f"redirector-{index}.log", port)
        redirector.nginx = proxy
        started.append(redirector)
        redirector.start()
        if proxy is not None:
            started.append(proxy)
            proxy.start()
        return redirector

    yield start
    for process in reversed(started):
        process.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = _state.get("dir")
    if path is None:
        return
    if exitstatus == 0 and not os.environ.get("ENGAGE_KEEP_TEST_DIRS"):
        shutil.rmtree(path, ignore_errors=True)
        _state["kept"] = False
    else:
        _state["kept"] = True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _state.get("kept"):
        terminalreporter.write_line(f"daemon logs and data kept in {_state['dir']}")
