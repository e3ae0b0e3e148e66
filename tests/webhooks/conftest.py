"""Fixtures for the webhook tests: real Redis (tests/conftest.py), real loopback receivers.

receiver()          Receiver: a ThreadingHTTPServer on 127.0.0.1 recording every request;
                    ``.answer`` decides each reply (status or (status, body, delay)).
wh_settings         Settings pointing at the session's redis-server, times shrunk to
                    tenths of seconds so retries and windows pass in a test, and
                    [webhooks] allow_private_targets on: the receivers are on 127.0.0.1.
store               WebhookStore on that Redis (flushed per test).
add_hook(target, ...)  a validated webhook stored without the ping.
append(n, ...)      appends n distinct events (their messages spread over the shards, or
                    all in ``shard=``); their message ids.
start_worker()      the worker in a thread of this process, stopped at teardown.
spawn_worker()      the worker as a real subprocess (python -m engage.webhooks run).
run(*argv)          engage-webhooks in this process: (exit code, stdout, stderr).
sparkpost_events(body)  a consumer written from SparkPost's documented payload.
run(*argv)          ``engage-webhooks ARGV`` in-process on the test Redis: (code, stdout, stderr).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from engage.settings import Settings
from engage.store.events import EventLog, entries_of, iso_time
from engage.webhooks import config
from engage.webhooks.config import Webhook
from engage.webhooks.store import WebhookStore
from engage.webhooks.worker import Worker
from support.stored import key_in_shard

REPO = Path(__file__).resolve().parents[2]
PREFIX = "test:"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0

    @property
    def batch_id(self) -> str:
        return self.headers.get("x-messagesystems-batch-id", "")

    @property
    def is_ping(self) -> bool:
        return json.loads(self.body) == [{"msys": {}}]


Answer = Any  # int, or (status, body bytes, delay seconds), or a callable(Request) -> either


@dataclass
class Receiver:
    """A webhook consumer on loopback. ``answer`` may be changed while it runs."""

    answer: Answer = 200
    requests: list[Request] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[Request]:
        """Batches (not pings) answered 2xx."""
        return [r for r in list(self.requests) if 200 <= r.status < 300 and not r.is_ping]

    def delivered_events(self) -> list[dict[str, Any]]:
        return [event for r in self.delivered() for event in sparkpost_events(r.body)]

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"receiver condition not met in {timeout} s; "
                             f"{len(self.requests)} requests: {[r.status for r in self.requests]}")

    def wait_events(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        self.wait_for(lambda r: len({e["message_id"] for e in r.delivered_events()}) >= count,
                      timeout)
        return self.delivered_events()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            request = Request(self.path, {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length), time.time())
            answer = receiver.answer(request) if callable(receiver.answer) else receiver.answer
            status, body, delay = answer if isinstance(answer, tuple) else (answer, b"", 0)
            if delay:
                receiver.release.wait(delay)
            request.status = status
            receiver.requests.append(request)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                request.status = -1  # the client is gone: nobody saw this answer

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(answer: Answer = 200) -> Receiver:
        rec = Receiver(answer)
        rec.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
        rec.server.daemon_threads = True
        threading.Thread(target=rec.server.serve_forever, args=(0.05,), daemon=True).start()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.release.set()
        assert rec.server is not None
        rec.server.shutdown()
        rec.server.server_close()


@pytest.fixture
def wh_settings(redis_server: Any, redis_client: Any) -> Settings:
    return Settings(redis_url=redis_server.url, key_prefix=PREFIX, log_level="DEBUG",
                    webhook_batch_size=10, webhook_batch_interval=0.2, webhook_timeout=1.0,
                    webhook_retry_base=0.2, webhook_retry_max=0.5, webhook_retry_window=30.0,
                    webhook_allow_private_targets=True)  # the receivers are on loopback


@pytest.fixture
def store(redis_client: Any, wh_settings: Settings) -> WebhookStore:
    return WebhookStore(redis_client, PREFIX, wh_settings.webhook_status_retention)


@pytest.fixture
def add_hook(store: WebhookStore) -> Callable[..., Webhook]:
    def add(target: str, **fields: Any) -> Webhook:
        hook = config.validate(Webhook(id=secrets.token_hex(8), name=fields.pop("name", "test"),
                                       target=target, created=time.time(), **fields))
        store.create(hook)
        return hook
    return add


def make_event(n: int, kind: str = "click", now: float | None = None,
               shard: int | None = None) -> dict[str, Any]:
    """An event shaped as engage.store.events.build_event makes them; its message in
    ``shard`` if given (else t<n>: the shards vary with n)."""
    moment = time.time() if now is None else now
    event: dict[str, Any] = {
        "type": kind, "timestamp": iso_time(moment), "message_id": f"<m{n}@example.com>",
        "transmission_id": f"t{n}" if shard is None else key_in_shard(shard),
        "campaign_id": "spring", "rcpt_to": f"user{n}@example.com",
        "raw_rcpt_to": f"User{n}@Example.com", "recipient_domain": "example.com",
        "rcpt_meta": {"n": n}, "rcpt_tags": ["news"], "friendly_from": "news@example.com",
        "msg_from": "bounces@example.com", "subject": "Hello", "sending_domain": "example.com",
        "injection_time": iso_time(1700000000), "open_tracking": True, "click_tracking": True,
        "initial_pixel": True, "ip_address": "192.0.2.7", "user_agent": "Mozilla/5.0",
        "queue_id": "4XyZ1",
    }
    if kind == "click":
        event.update(target_link_url=f"https://example.com/p/{n}", target_link_name="offer",
                     accept_language="en")
    return event


@pytest.fixture
def append(redis_client: Any) -> Callable[..., list[str]]:
    """append(count, start=0, kind="click", shard=None) -> the message ids of the appended
    events."""
    log = EventLog(redis_client, PREFIX)

    def add(count: int, start: int = 0, kind: str = "click", shard: int | None = None
            ) -> list[str]:
        events = [make_event(n, kind, shard=shard) for n in range(start, start + count)]
        log.append_many(events)
        return [e["message_id"] for e in events]
    return add


@pytest.fixture
def start_worker(wh_settings: Settings) -> Iterator[Callable[..., Worker]]:
    from engage.store.redisconn import connect

    running: list[tuple[Worker, threading.Thread]] = []

    def start(**overrides: Any) -> Worker:
        settings = replace(wh_settings, **overrides)
        worker = Worker(connect(settings.redis_url), settings)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, _ in running:
        worker.stop.set()
    for _, thread in running:
        thread.join(10)


@pytest.fixture
def spawn_worker(wh_settings: Settings, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    empty = tmp_path / "empty.conf"
    empty.touch()
    env = {**os.environ, "ENGAGE_CONFIG": str(empty), "ENGAGE_REDIS_URL": wh_settings.redis_url,
           "ENGAGE_KEY_PREFIX": PREFIX, "ENGAGE_LOG_LEVEL": "DEBUG",
           "ENGAGE_WEBHOOK_BATCH_SIZE": str(wh_settings.webhook_batch_size),
           "ENGAGE_WEBHOOK_BATCH_INTERVAL": str(wh_settings.webhook_batch_interval),
           "ENGAGE_WEBHOOK_TIMEOUT": str(wh_settings.webhook_timeout),
           "ENGAGE_WEBHOOK_RETRY_BASE": str(wh_settings.webhook_retry_base),
           "ENGAGE_WEBHOOK_RETRY_MAX": str(wh_settings.webhook_retry_max),
           "ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "yes",  # the receivers are on loopback
           "PYTHONPATH": str(REPO / "redirector")}

    def spawn() -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "engage.webhooks", "run"], env=env,
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def sparkpost_events(body: bytes) -> list[dict[str, Any]]:
    """What a consumer written for SparkPost's documented webhook payload does: a JSON
    array of ``{"msys": {<event class>: {...}}}`` (``{"msys": {}}`` is the ping), the
    event's ``timestamp`` in unix seconds as a string, ``injection_time`` ISO 8601."""
    out = []
    for item in json.loads(body):
        msys = item["msys"]
        if not msys:
            continue
        ((event_class, event),) = msys.items()
        assert event_class == "track_event"
        event["_when"] = datetime.fromtimestamp(int(event["timestamp"]), tz=timezone.utc)
        event["_injected"] = datetime.strptime(event["injection_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert event["type"] in ("click", "open", "initial_open")
        assert event["event_id"].isdigit() and event["rcpt_to"] and event["raw_rcpt_to"]
        event["_shard"] = entries_of(int(event["event_id"]))[0][0]  # layout 2's shard first
        assert isinstance(event["rcpt_meta"], dict) and isinstance(event["rcpt_tags"], list)
        out.append(event)
    return out


@pytest.fixture
def run(wh_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any
        ) -> Callable[..., tuple[int, str, str]]:
    from engage.webhooks.cli import main as cli

    monkeypatch.setenv("ENGAGE_REDIS_URL", wh_settings.redis_url)
    monkeypatch.setenv("ENGAGE_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ENGAGE_CONFIG", "/dev/null")
    monkeypatch.setenv("ENGAGE_WEBHOOK_TIMEOUT", "1")
    monkeypatch.setenv("ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS", "yes")  # receivers on loopback

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return invoke
