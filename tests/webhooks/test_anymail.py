"""Conformance with the clients SparkPost and Resend users already run: django-anymail's
SparkPost and Resend tracking views in a minimal Django site on a real HTTP server
(tests/webhooks/anymail_site.py), webhooks created with the real ``engage-webhooks
create`` (its validation ping must pass the view), delivered by the real worker, events
made by the real redirector app on real Redis. Every field anymail reports is compared
with what engage stored; every request (pings too) is verified with ``svix``,
``standardwebhooks`` and ``resend.Webhooks.verify``."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import resend  # the test extra (setup.cfg) installs these; CI must not skip them
import standardwebhooks
import svix.webhooks

from engage.settings import Settings
from engage.store import keys
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
from engage.webhooks.signature import ALIASES, new_secret

from . import anymail_site
from .conftest import PREFIX

USER, PASSWORD = anymail_site.BASIC_AUTH.split(":")
ANYMAIL_TYPES = {"click": "clicked", "open": "opened", "initial_open": "opened"}


@pytest.fixture(scope="module")
def site():
    found, stop = anymail_site.start()
    yield found
    stop()


@pytest.fixture
def django(site):
    site.reset()
    return site


@pytest.fixture(autouse=True)
def slower_timeout(run, monkeypatch):
    monkeypatch.setenv("ENGAGE_WEBHOOK_TIMEOUT", "5")  # Django's first answer may be slow


@pytest.fixture
def redirector(redis_client, wh_settings):
    settings = Settings(redis_url=wh_settings.redis_url, key_prefix=PREFIX, api_keys=("k",),
                        rate_limit=0, tracking_url="https://click.example.com")
    return create_app(settings, redis_client).test_client()


@pytest.fixture
def mailing(redis_client):
    """mailing(n, rcpt=...) registers n messages as the milter does; their tokens."""
    store = LinkStore(redis_client, PREFIX)

    def register(count: int, rcpt: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
        tokens = []
        for n in range(count):
            template = Template(
                links=(Link(f"https://shop.example/sale?item={n}", "sale"),
                       Link("https://shop.example/help", "")),
                campaign_id=f"spring-{n % 2}", tags=("news", "category=confirm_email"),
                friendly_from="news@shop.example", sending_domain="shop.example")
            key = new_message_key()
            store.register(key, template, MessageRecord(
                rcpt_to=rcpt or (f"Reader{n}@Example.com",), mail_from="bounces@shop.example",
                subject=f"Sale {n}", message_id=f"<{key}@shop.example>", queue_id=f"Q{n}",
                injection_time=1_700_000_000 + n, metadata={"user": n, "plan": "gold"},
                template_id=template.template_id))
            tokens.append((open_token(key, template.template_id),
                           click_token(key, template.template_id, 0),
                           click_token(key, template.template_id, 1)))
        return tokens
    return register


def engage_events(redirector, tokens, initial: bool = True) -> None:
    """What recipients do: open (top and bottom pixel), click both links."""
    for n, (opened, first, second) in enumerate(tokens):
        agent = {"User-Agent": f"Mail/{n}.0 (reader {n})"}
        if initial:
            assert redirector.get(f"/i/{opened}", headers=agent).status_code == 200
        assert redirector.get(f"/o/{opened}", headers=agent).status_code == 200
        assert redirector.get(f"/c/{first}", headers=agent).status_code == 302
        assert redirector.get(f"/c/{second}", headers=agent).status_code == 302


def stored_events(redis_client) -> dict[str, dict[str, Any]]:
    """Every shard's events, by event_id."""
    log = EventLog(redis_client, PREFIX)
    return {event["event_id"]: event for shard in keys.shard_ids()
            for event in log.decoded(shard, redis_client.xrange(keys.events(PREFIX, shard)))}


def at_second(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.replace(microsecond=0)


def verify_all(requests, secret: str) -> int:
    """Every request through svix (svix-* headers), standardwebhooks (webhook-* headers)
    and resend.Webhooks.verify; the number verified."""
    for request in requests:
        standard = {name: request.headers[name] for name in ALIASES}
        aliases = {alias: request.headers[alias] for alias in ALIASES.values()}
        assert standard["webhook-id"] == request.headers["x-messagesystems-batch-id"]
        svix.webhooks.Webhook(secret).verify(request.body, aliases)
        standardwebhooks.Webhook(secret).verify(request.body, standard)
        resend.Webhooks.verify({"payload": request.body.decode(), "webhook_secret": secret,
                                "headers": {"id": aliases["svix-id"],
                                            "timestamp": aliases["svix-timestamp"],
                                            "signature": aliases["svix-signature"]}})
    return len(requests)


def test_anymail_sparkpost_view_gets_every_event_as_engage_stored_it(
        django, run, store, redirector, mailing, start_worker, redis_client):
    refused, _, err = run("create", "--name", "x", "--target", django.url("sparkpost"),
                          "--auth", "basic", "--username", USER, "--password", "wrong")
    assert refused == 1 and "refused the validation ping" in err and store.all() == []
    code, out, _ = run("create", "--name", "anymail", "--target", django.url("sparkpost"),
                       "--auth", "basic", "--username", USER, "--password", PASSWORD, "--sign")
    assert code == 0
    hook_id, secret_line = out.strip().splitlines()
    hook, secret = store.get(hook_id), secret_line.rpartition(" ")[2]
    assert hook.events == ("click", "open")  # the default subscription: no initial_open
    assert [r.status for r in django.requests] == [400, 200]  # the pings
    start_worker()
    tokens = mailing(4)
    engage_events(redirector, tokens)
    received = django.wait_events("sparkpost", 4 * 3)
    stored = stored_events(redis_client)
    assert sorted(e["type"] for e in stored.values()) == sorted(
        ["initial_open", "open", "click", "click"] * 4)
    assert sorted(event.event_id for event in received) == sorted(
        event_id for event_id, event in stored.items() if event["type"] != "initial_open")
    for event in received:
        kept = stored[event.event_id]
        assert event.event_type == ANYMAIL_TYPES[kept["type"]]  # never "unknown"
        assert event.timestamp == at_second(kept["timestamp"])
        assert event.message_id == kept["transmission_id"]
        assert event.recipient == kept["raw_rcpt_to"] and event.recipient.startswith("Reader")
        assert event.tags == [kept["campaign_id"]]  # anymail's tags: SparkPost's campaign_id
        assert event.metadata == kept["rcpt_meta"]
        assert event.click_url == kept.get("target_link_url")
        assert event.user_agent == kept["user_agent"] and event.user_agent.startswith("Mail/")
        (item,) = event.esp_event["msys"].values()
        assert item == {**kept, "timestamp": str(int(at_second(kept["timestamp"]).timestamp()))}
    delivered = [r for r in django.requests if r.status == 200]
    assert verify_all(delivered, secret) == len(delivered) >= 2


def test_initial_open_reaches_anymail_as_its_setting_says(django, run, store, redirector,
                                                         mailing, start_worker, redis_client):
    """Subscribed by name, ``initial_open`` is "unknown" to anymail by default and "opened"
    with SPARKPOST_TRACK_INITIAL_OPEN_AS_OPENED (then a first open is reported twice)."""
    for route in ("sparkpost", "sparkpost-initial"):
        code, _, _ = run("create", "--name", route, "--target", django.url(route),
                         "--events", "initial_open,open", "--auth", "basic",
                         "--username", USER, "--password", PASSWORD)
        assert code == 0
    start_worker()
    engage_events(redirector, mailing(2))
    stored = stored_events(redis_client)
    for route, initial_as in (("sparkpost", "unknown"), ("sparkpost-initial", "opened")):
        received = django.wait_events(route, 4)
        kinds = {stored[e.event_id]["type"]: e.event_type for e in received}
        assert kinds == {"initial_open": initial_as, "open": "opened"}


def test_multi_recipient_events_name_no_recipient_split_recipients_does(
        django, run, redirector, mailing, start_worker):
    """One transaction, one body, one set of links: an event cannot say which recipient
    opened (docs: split_recipients). anymail then reports recipient None; the SparkPost
    event carries every recipient in rcpt_to_list."""
    assert run("create", "--name", "m", "--target", django.url("sparkpost"), "--events",
               "open", "--auth", "basic", "--username", USER, "--password", PASSWORD)[0] == 0
    start_worker()
    engage_events(redirector, mailing(1, rcpt=("ann@example.com", "Bob@Example.com")))
    (event,) = django.wait_events("sparkpost", 1)
    assert event.recipient is None
    assert event.esp_event["msys"]["track_event"]["rcpt_to_list"] == [
        "ann@example.com", "bob@example.com"]


def test_anymail_resend_view_with_a_whsec_secret_gets_every_event_filled(
        django, run, store, redirector, mailing, start_worker, redis_client):
    other = new_secret()
    refused, _, err = run("create", "--name", "x", "--target", django.url("resend"),
                          "--format", "events", "--signing-secret", other)
    assert refused == 1 and "refused the validation ping" in err
    code, out, _ = run("create", "--name", "resend", "--target", django.url("resend"),
                       "--format", "events", "--signing-secret", anymail_site.RESEND_SECRET)
    assert code == 0 and store.get(out.strip()).signature_scheme == "standard"
    assert [r.status for r in django.requests] == [400, 200]
    ping = json.loads(django.requests[1].body)
    assert ping["type"] == "ping" and ping["data"] == {}
    start_worker()
    tokens = mailing(3)
    engage_events(redirector, tokens)
    received = django.wait_events("resend", 3 * 3 + 1)  # + the ping ("unknown" to anymail)
    stored = stored_events(redis_client)
    requests = {r.headers["svix-id"]: r for r in django.requests if r.status == 200}
    events = [e for e in received if e.esp_event["type"] != "ping"]
    assert sorted(e.esp_event["data"]["event_id"] for e in events) == sorted(
        event_id for event_id, event in stored.items() if event["type"] != "initial_open")
    for event in events:
        data = event.esp_event["data"]
        kept = stored[data["event_id"]]
        assert event.event_type == ANYMAIL_TYPES[kept["type"]]
        assert event.timestamp == datetime.fromisoformat(kept["timestamp"].replace("Z", "+00:00"))
        assert event.message_id == kept["email_id"]
        assert event.event_id in requests  # svix-id: the batch id, one per event
        assert event.recipient == kept["raw_rcpt_to"]
        assert event.tags == kept["rcpt_tags"] and event.metadata == kept["rcpt_meta"]
        if kept["type"] == "click":
            assert event.click_url == kept["target_link_url"]
            assert event.user_agent == kept["user_agent"] and event.user_agent.startswith("Mail/")
            assert data["click"] == {"link": kept["target_link_url"],
                                     "ipAddress": kept["ip_address"],
                                     "userAgent": kept["user_agent"],
                                     "timestamp": kept["timestamp"]}
        else:  # Resend sends no user agent with opens, so anymail reads none; ours is there
            assert event.click_url is None and data["user_agent"] == kept["user_agent"]
        assert data["from"] == kept["friendly_from"] and data["to"] == [kept["raw_rcpt_to"]]
        assert data["subject"] == kept["subject"]
        assert data["created_at"] == kept["injection_time"]
        assert data["tags"] == {"news": "true", "category": "confirm_email"}
        assert data["campaign_id"] == kept["campaign_id"]
        assert data["metadata"] == kept["rcpt_meta"]
        assert data["verdict"] == kept["engage"]["verdict"]
    assert verify_all(list(requests.values()), anymail_site.RESEND_SECRET) == 3 * 3 + 1


def test_deliveries_verify_with_every_standard_webhooks_verifier(
        receiver, run, store, redirector, mailing, start_worker):
    """A receiver that verifies every request with svix and standardwebhooks, refusing what
    fails: the ping and every batch (retried after a failure: signed afresh) pass."""
    secret = new_secret()
    attempts: list[int] = []

    def verifying(request):
        aliases = {a: request.headers.get(a, "") for a in ALIASES.values()}
        standard = {s: request.headers.get(s, "") for s in ALIASES}
        try:
            svix.webhooks.Webhook(secret).verify(request.body, aliases)
            standardwebhooks.Webhook(secret).verify(request.body, standard)
        except Exception:  # noqa: BLE001 (any verification failure)
            return 401
        if b'"msys":{}' in request.body or b'"type":"ping"' in request.body:
            return 200
        attempts.append(1)
        return 503 if len(attempts) == 1 else 200  # the first batch fails once

    rec = receiver(verifying)
    for form in ("sparkpost", "events"):
        code, _, _ = run("create", "--name", form, "--target", rec.url, "--format", form,
                         "--signing-secret", secret)
        assert code == 0
    start_worker()
    engage_events(redirector, mailing(2), initial=False)
    rec.wait_for(lambda r: sum(1 for q in r.requests if q.status == 200) >= 2 + 1 + 6)
    (failed,) = [q for q in rec.requests if q.status == 503]
    rec.wait_for(lambda r: any(q.batch_id == failed.batch_id and q.status == 200
                               for q in r.requests))
    assert {q.status for q in rec.requests} == {200, 503}
    assert all(q.headers["webhook-id"] == q.batch_id for q in rec.requests)
