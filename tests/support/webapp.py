"""Fixtures for the tests that drive the redirector's Flask app (tests/web/, tests/metrics/,
tests/verdicts/, each taking them in its conftest.py): apps built per test on the session's
Redis, mail.

``web_redis`` and ``rclient`` are tests/conftest.py's ``redis_server`` and ``redis_client``
under the names these tests use (one Redis harness: tests/support/procs.py's RedisServer);
a test may stop and restart ``web_redis``. ``mail`` registers a message exactly as the
milter does.
"""
from __future__ import annotations

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
from support.procs import RedisServer

__all__ = ["API_KEY", "Mail", "client", "events", "mail", "make_app", "rclient", "settings",
           "web_redis"]

API_KEY = "test-key-1-abcdefghijkl"


@pytest.fixture(scope="session")
def web_redis(redis_server: RedisServer) -> RedisServer:
    """The session's redis-server (tests/conftest.py); a test may stop and start it."""
    return redis_server


@pytest.fixture
def rclient(redis_client: redis.Redis[bytes]) -> redis.Redis[bytes]:
    """redis_client (flushed before the test), under the name the web tests use."""
    return redis_client


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
