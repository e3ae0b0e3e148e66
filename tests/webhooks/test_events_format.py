"""The ``events`` webhook format (the /v1/track family's): one JSON object per event and
per POST, through the same durable queue, retries and signature, to a loopback receiver,
read by an application written from the tracking API document's field names."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from engage.settings import Settings
from engage.store.links import Link, LinkStore, MessageRecord, Template, new_message_key, open_token
from engage.web.app import create_app
from engage.webhooks import signature
from engage.webhooks.cli import main as cli
from engage.webhooks.payload import batch_body, v1_event

from .conftest import PREFIX, make_event

API_KEY = "app-key-abcdefghijklmnop"
SECRET = "shared-secret"
SEED_DATA_FIELDS = ("email_id", "recipient", "campaign_id", "metadata", "tags", "ip_address",
                    "user_agent")


class SeedApplication:
    """An application written against the tracking API document: it takes webhook POSTs
    of email.opened / email.clicked and asks GET /api/v1/messages/<email_id> for status."""

    def __init__(self) -> None:
        self.opened: dict[str, dict[str, Any]] = {}
        self.clicked: list[dict[str, Any]] = []

    def webhook(self, body: bytes) -> None:
        event = json.loads(body)
        assert set(event) == {"type", "created_at", "data"}
        datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
        data = event["data"]
        for name in SEED_DATA_FIELDS:
            assert name in data, name
        assert isinstance(data["metadata"], dict) and isinstance(data["tags"], dict)
        if event["type"] == "email.opened":
            self.opened.setdefault(data["email_id"], data)
        elif event["type"] == "email.clicked":
            assert data["url"].startswith("http") and "referer" in data
            self.clicked.append(data)
        else:
            raise AssertionError(f"unexpected webhook type {event['type']}")

    def status(self, http: Any, email_id: str) -> dict[str, Any]:
        reply = http.get(f"/api/v1/messages/{email_id}", headers={"Authorization": API_KEY})
        assert reply.status_code == 200
        result: dict[str, Any] = reply.get_json()["results"]
        return result


@pytest.fixture
def tracked(redis_client, wh_settings):
    """A redirector app on the test Redis and one registered message; (client, email_id, key)."""
    settings = Settings(redis_url=wh_settings.redis_url, key_prefix=PREFIX, api_keys=(API_KEY,),
                        rate_limit=0, tracking_url="https://click.example.com")
    template = Template(links=(Link("https://shop.example/sale", "sale"),), campaign_id="spring",
                        tags=("news",), friendly_from="news@example.com",
                        sending_domain="example.com")
    key = new_message_key()
    record = MessageRecord(rcpt_to=("Ann@Example.com",), mail_from="b@example.com",
                           subject="Hi", message_id="<x@example.com>", queue_id="Q1",
                           injection_time=1700000000, metadata={"user": 42},
                           template_id=template.template_id)
    LinkStore(redis_client, PREFIX).register(key, template, record)
    app = create_app(settings, redis_client)
    return app.test_client(), open_token(key, template.template_id), key


def test_events_webhook_reaches_an_application_written_from_the_seed(
        receiver, add_hook, start_worker, tracked):
    rec = receiver()
    add_hook(rec.url, format="events", events=("open", "click"), signing_secret=SECRET,
             signature_scheme="engage")
    start_worker()
    http, email_id, _ = tracked
    headers = {"User-Agent": "Mail/1.0", "Referer": "https://webmail.example/"}
    assert http.get(f"/v1/track/open/{email_id}", headers=headers).status_code == 200
    assert http.get(f"/i/{email_id}").status_code == 200  # initial_open: not subscribed
    assert http.get(f"/v1/track/click/{email_id}0", headers=headers).status_code == 302
    rec.wait_for(lambda r: len(r.delivered()) >= 2)
    app = SeedApplication()
    for request in rec.delivered():
        assert signature.verify(SECRET, request.headers["x-engage-signature"], request.body)
        assert request.batch_id
        app.webhook(request.body)
    assert len(rec.delivered()) == 2
    opened = app.opened[email_id]
    assert opened["recipient"] == "Ann@Example.com" and opened["campaign_id"] == "spring"
    assert opened["metadata"] == {"user": 42} and opened["tags"] == {"news": "true"}
    assert opened["user_agent"] == "Mail/1.0" and opened["ip_address"]
    (click,) = app.clicked
    assert click["url"] == "https://shop.example/sale"
    assert click["referer"] == "https://webmail.example/"
    status = app.status(http, email_id)
    assert status["opened_at"] and status["clicked_at"] and status["click_count"] == 1
    assert status["campaign_id"] == "spring" and status["recipient"] == "Ann@Example.com"


def test_events_webhook_is_retried_until_the_receiver_takes_it(receiver, add_hook, append,
                                                               start_worker):
    failures: list[str] = []

    def flaky(request):
        if len(failures) < 2:
            failures.append(request.batch_id)
            return 503
        return 200

    rec = receiver(flaky)
    add_hook(rec.url, format="events", events=("click",))
    start_worker()
    append(3)
    rec.wait_for(lambda r: len(r.delivered()) >= 3)
    bodies = [json.loads(r.body) for r in rec.delivered()]
    assert all(body["type"] == "email.clicked" for body in bodies)
    assert sorted(body["data"]["message_id"] for body in bodies) == [f"<m{n}@example.com>"
                                                                     for n in range(3)]
    assert set(failures) <= {r.batch_id for r in rec.delivered()}  # failed batches retried
    assert len(rec.delivered()) == 3  # each event once


def test_v1_event_maps_the_stored_fields():
    click = dict(make_event(1), email_id="E1", referer="https://r.example/", event_id="7")
    mapped = v1_event(click)
    assert mapped["type"] == "email.clicked" and mapped["created_at"] == click["timestamp"]
    assert mapped["data"]["url"] == click["target_link_url"]
    assert mapped["data"]["referer"] == "https://r.example/"
    assert mapped["data"]["recipient"] == "User1@Example.com"
    opened = v1_event(dict(make_event(2, "open"), rcpt_to_list=["a@x.example", "b@x.example"]))
    assert opened["type"] == "email.opened" and "url" not in opened["data"]
    assert opened["data"]["recipients"] == ["a@x.example", "b@x.example"]
    assert opened["data"]["recipient"] == "a@x.example, b@x.example"
    body, count = batch_body([json.dumps(dict(make_event(3), event_id="9")).encode()], "events")
    assert count == 1 and json.loads(body)["data"]["event_id"] == "9"


def test_cli_create_with_format_events(receiver, wh_settings, monkeypatch, capsys, store):
    monkeypatch.setenv("ENGAGE_REDIS_URL", wh_settings.redis_url)
    monkeypatch.setenv("ENGAGE_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ENGAGE_CONFIG", "/dev/null")
    monkeypatch.setenv("ENGAGE_WEBHOOK_TIMEOUT", "1")
    monkeypatch.setenv("ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS", "yes")  # receivers on loopback
    rec = receiver()
    assert cli(["create", "--name", "app", "--target", rec.url, "--format", "events"]) == 0
    hook = store.get(capsys.readouterr().out.strip())
    assert hook.format == "events" and hook.events == ("click", "open")
    assert json.loads(rec.requests[0].body)["type"] == "ping"
    assert cli(["update", hook.id, "--format", "sparkpost"]) == 0
    assert store.get(hook.id).format == "sparkpost"
    assert json.loads(rec.requests[1].body) == [{"msys": {}}]
    with pytest.raises(SystemExit):
        cli(["create", "--name", "x", "--target", rec.url, "--format", "xml"])
