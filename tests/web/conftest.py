"""Fixtures for the redirector tests: a private redis-server, apps built per test, mail.

``web_redis`` is our own session redis-server (named apart from any project-wide fixture)
so a test may stop and restart it. ``mail`` registers a message exactly as the milter does.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from engage.settings import Settings
from engage.store.events import EventLog
from engage.store.links import (
    Link,
    LinkStore,
    MessageRecord,
    Template,
    click_token,
    new_message_key,
    open_token,
)
from engage.web.app import create_app

API_KEY = "test-key-1-abcdefghijkl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    directory: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, new_port_if_taken: bool = False) -> None:
        """Start on ``port``. Another test session on this machine may have taken the port
        since it was picked: then our redis-server exits, and a ping would be answered by
        theirs (which flushes our data). Only our own process counts; the first start may
        move to another free port."""
        for _ in range(5):
            if self._start_once():
                return
            if not new_port_if_taken:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _start_once(self) -> bool:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.directory], stdout=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        for _ in range(100):
            if self.process.poll() is not None:
                self.process = None
                return False
            try:
                if client.info("server")["process_id"] == self.process.pid:
                    return True
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def web_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), str(tmp_path_factory.mktemp("web-redis")))
    server.start(new_port_if_taken=True)
    yield server
    server.stop()


@pytest.fixture
def rclient(web_redis: RedisServer) -> redis.Redis[bytes]:
    if web_redis.process is None:
        web_redis.start()
    client = redis.Redis(port=web_redis.port)
    client.flushdb()
    return client


@pytest.fixture
def settings(web_redis: RedisServer, rclient: redis.Redis[bytes]) -> Settings:
    return Settings(redis_url=web_redis.url, api_keys=(API_KEY,),
                    tracking_url="https://click.example.com", rate_limit=0)


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., Flask]:
    """A fresh app per call; keyword arguments override settings."""
    def make(**overrides: Any) -> Flask:
        app = create_app(replace(settings, **overrides))
        app.testing = True
        return app
    return make


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


@pytest.fixture
def events(settings: Settings, rclient: redis.Redis[bytes]) -> EventLog:
    return EventLog(rclient, settings.key_prefix, settings.events_retention_days)


@dataclass
class Mail:
    """One registered message: its key, template and the tokens the milter would write."""

    key: str
    template: Template
    record: MessageRecord
    links: tuple[Link, ...] = field(default=())

    def click(self, index: int = 0) -> str:
        return click_token(self.key, self.template.template_id, index)

    @property
    def open(self) -> str:
        return open_token(self.key, self.template.template_id)


@pytest.fixture
def mail(settings: Settings, rclient: redis.Redis[bytes]) -> Callable[..., Mail]:
    store = LinkStore(rclient, settings.key_prefix)

    def register(*urls: str, rcpt: tuple[str, ...] = ("Rcpt@Example.COM",),
                 campaign: str = "spring", subject: str = "Hello", names: tuple[str, ...] = (),
                 metadata: dict[str, Any] | None = None, **template: Any) -> Mail:
        links = tuple(Link(url, names[i] if i < len(names) else "")
                      for i, url in enumerate(urls or ("https://example.com/",)))
        tpl = Template(links=links, campaign_id=campaign, tags=("news", "vip"),
                       friendly_from="news@example.com", sending_domain="example.com",
                       **template)
        key = new_message_key()
        record = MessageRecord(rcpt_to=rcpt, mail_from="bounces@example.com", subject=subject,
                               message_id=f"<{key}@example.com>", queue_id="4XyZ1",
                               injection_time=1700000000, metadata=metadata or {"user": 7},
                               template_id=tpl.template_id)
        store.register(key, tpl, record)
        return Mail(key, tpl, record, links)
    return register
