"""The pymilter adapter in-process (Milter.testctx) against a real Redis: verdicts,
replies, header deletions by index, and the failure policy."""
from __future__ import annotations

from dataclasses import replace

import Milter
import Milter.test  # noqa: F401  (makes @noreply callbacks return CONTINUE under TestCtx)
import pytest

from engage.settings import Settings
from engage.store import keys as key_registry
from engage.store.links import LinkStore, MessageRecord, Template
from engage.store.redisconn import connect
from engage_milter import filter as milter_filter
from engage_milter import replies
from support.milterctx import MESSAGE, RecordingCtx, feed


@pytest.fixture
def settings(redis_server):
    return Settings(redis_url=redis_server.url, key_prefix="t:", tracking_url="https://t.example/x")


@pytest.fixture
def store(redis_client):
    return LinkStore(redis_client, "t:")


def test_tracked_message_is_accepted_rewritten_and_registered(settings, store, redis_client):
    verdict, ctx, body = feed(settings, store, MESSAGE)
    assert verdict == Milter.ACCEPT
    assert ctx.header_changes == [("X-MSYS-API", 2, ""), ("X-MSYS-API", 1, "")]
    assert body is not None and b"https://t.example/x/c/" in body and b"shop.example/p" not in body
    token = body.split(b"https://t.example/x/c/")[1].split(b'"')[0].decode()
    resolved = store.resolve(token)
    assert resolved is not None
    assert resolved.link.url == "https://shop.example/p?a=1&b=2"
    assert resolved.template.campaign_id == "spring" and resolved.template.tags == ("sale",)
    assert resolved.record.metadata == {"uid": 7}
    assert resolved.record.rcpt_to == ("ann@example.net",)
    assert resolved.record.mail_from == "bounce@shop.example"
    assert resolved.record.queue_id == "4QID1"
    assert resolved.record.message_id == "<m1@shop.example>"
    assert resolved.template.friendly_from == "news@shop.example"


def test_invalid_header_is_rejected_with_the_documented_reply(settings, store, redis_client):
    raw = MESSAGE.replace(b'{"campaign_id": "spring"', b'{"campaign_id": "spring",,')
    verdict, ctx, body = feed(settings, store, raw)
    assert verdict == Milter.REJECT
    assert ctx._reply[:2] == ("550", "5.6.0")
    assert ctx._reply[2].startswith("JSON parsing error in X-MSYS-API:")
    assert body is None and redis_client.dbsize() == 0


def test_metadata_type_error_reply(settings, store):
    raw = MESSAGE.replace(b'"metadata": {"uid": 7}', b'"metadata": [7]')
    verdict, ctx, _ = feed(settings, store, raw)
    assert verdict == Milter.REJECT
    assert ctx._reply == ("550", "5.6.0", "X-MSYS-API 'metadata' must be of type 'json object'")


def test_percent_in_reply_text_is_doubled_for_pymilter():
    assert replies.Reply("550", "5.6.0", "100% bad\r\n  text").milter_text() == "100%% bad text"


def test_store_down_tempfails_with_421(settings):
    dead = LinkStore(connect("redis://127.0.0.1:1/0"), "t:")
    verdict, ctx, body = feed(settings, dead, MESSAGE)
    assert verdict == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("421", "4.3.3")
    assert body is None


def test_store_down_with_accept_policy_delivers_untracked_without_the_header(settings):
    dead = LinkStore(connect("redis://127.0.0.1:1/0"), "t:")
    verdict, ctx, body = feed(replace(settings, on_store_error="accept"), dead, MESSAGE)
    assert verdict == Milter.ACCEPT
    assert body is None
    assert ctx.header_changes == [("X-MSYS-API", 2, ""), ("X-MSYS-API", 1, "")]


def test_a_bug_while_planning_delivers_unchanged(settings, store, monkeypatch, redis_client):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")
    monkeypatch.setattr(milter_filter, "plan_message", broken)
    verdict, ctx, body = feed(settings, store, MESSAGE)
    assert verdict == Milter.ACCEPT and body is None
    assert ctx.header_changes == [("X-MSYS-API", 2, ""), ("X-MSYS-API", 1, "")]
    assert redis_client.dbsize() == 0


def test_mta_refusing_a_change_tempfails(settings, store):
    ctx = RecordingCtx()
    ctx.fail_replacebody = True
    verdict, _, _ = feed(settings, store, MESSAGE, ctx)
    assert verdict == Milter.TEMPFAIL


def test_tracking_off_in_header_leaves_body_alone(settings, store, redis_client):
    raw = MESSAGE.replace(b'"tags": ["sale"]}',
                          b'"tags": ["sale"], "options": {"open_tracking": false, "click_tracking": false}}')
    verdict, ctx, body = feed(settings, store, raw)
    assert verdict == Milter.ACCEPT and body is None and redis_client.dbsize() == 0
    assert len(ctx.header_changes) == 2


def test_message_without_header_is_tracked_by_config_default(settings, store):
    raw = b"\r\n".join(line for line in MESSAGE.split(b"\r\n")
                        if not line.lower().startswith((b"x-msys", b"  \"tags")))
    verdict, ctx, body = feed(settings, store, raw)
    assert verdict == Milter.ACCEPT and ctx.header_changes == []
    assert body is not None and b"/c/" in body and b"/i/" in body and b"/o/" in body


def test_template_is_stored_once_for_many_recipients(settings, store, redis_client):
    for _ in range(5):
        feed(settings, store, MESSAGE)
    by_family: dict[str, list[str]] = {}
    for key in redis_client.keys("t:*"):
        family = key_registry.family_of("t:", key.decode())
        by_family.setdefault(family.name if family else "?", []).append(key.decode())
    buckets, templates = by_family["message bucket"], by_family["template"]
    records = [(key, field) for key in buckets for field in redis_client.hkeys(key) if field]
    shards = {key_registry.shard_of_key("t:", key) for key in buckets}
    assert len(records) == 5 and len(templates) == len(shards)  # once per shard used
    assert {key_registry.shard_of_key("t:", key) for key in templates} == shards
    template_json = redis_client.get(templates[0])
    assert Template.from_json(template_json).links[0].url == "https://shop.example/p?a=1&b=2"
    stored, base = redis_client.hmget(records[0][0], records[0][1], "")
    record = MessageRecord.from_text(stored, MessageRecord.from_text(base))
    assert record.metadata == {"uid": 7}
