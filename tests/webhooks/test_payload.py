"""Pure parts: SparkPost's batch body, our signature header, webhook definitions."""
from __future__ import annotations

import json
import re

import pytest

from engage.webhooks import config, signature
from engage.webhooks.config import ConfigError, Webhook
from engage.webhooks.payload import PING, batch_body, unix_seconds, webhook_event

from .conftest import make_event, sparkpost_events


def test_timestamp_becomes_unix_seconds_string_injection_time_stays_iso():
    assert unix_seconds("2016-02-02T19:50:00.000Z") == "1454442600"
    event = webhook_event({"type": "click", "timestamp": "2016-02-02T19:50:00.999Z",
                           "injection_time": "2016-04-18T14:25:07.000Z", "rcpt_meta": {"a": 1}})
    assert event == {"type": "click", "timestamp": "1454442600",
                     "injection_time": "2016-04-18T14:25:07.000Z", "rcpt_meta": {"a": 1}}


def test_batch_body_is_sparkpost_track_event_array_a_sparkpost_consumer_accepts():
    stored = [b'{"event_id":"17000000000001000",' + json.dumps(make_event(n))[1:].encode()
              for n in range(3)]
    body, count = batch_body(stored)
    assert count == 3
    items = json.loads(body)
    assert [list(item) for item in items] == [["msys"]] * 3
    assert all(list(item["msys"]) == ["track_event"] for item in items)
    events = sparkpost_events(body)
    assert [e["target_link_url"] for e in events] == [f"https://example.com/p/{n}" for n in range(3)]
    assert events[0]["raw_rcpt_to"] == "User0@Example.com"


def test_spliced_fast_path_equals_parsing_and_odd_events_are_parsed():
    from engage.store.events import with_event_id
    from engage.webhooks.payload import FAST, webhook_json

    stored = with_event_id("1700000000123-4", json.dumps(make_event(7), separators=(",", ":"),
                                                       ensure_ascii=False).encode(), 5)
    assert FAST.match(stored)
    assert json.loads(webhook_json(stored)) == webhook_event(json.loads(stored))
    odd = b'{"event_id":"1","timestamp":"2016-02-02T19:50:00.000Z","type":"open","subject":"\xc3\xa9"}'
    assert not FAST.match(odd)
    assert json.loads(webhook_json(odd)) == {"event_id": "1", "timestamp": "1454442600",
                                             "type": "open", "subject": "\u00e9"}


def test_ping_is_sparkposts_empty_msys():
    assert json.loads(PING) == [{"msys": {}}]
    assert sparkpost_events(PING) == []


def test_signature_verifies_only_the_signed_body_with_the_secret_in_time():
    body = b'[{"msys":{}}]'
    header = signature.sign("s3cret", body, now=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert signature.verify("s3cret", header, body, now=1_700_000_100)
    assert not signature.verify("s3cret", header, body + b" ", now=1_700_000_100)
    assert not signature.verify("other", header, body, now=1_700_000_100)
    assert not signature.verify("s3cret", header, body, now=1_700_000_000 + 301)
    assert not signature.verify("s3cret", "v1=abc", body)
    assert not signature.verify("s3cret", "t=x,v1=abc", body)


@pytest.mark.parametrize("header", [
    "", ",", "=", "t=", "v1=", "t=1700000000", "t=1700000000,v1=", "t=1700000000,v1=\u00e9\u00e9",
    "t=1700000000,v1=caf\u00e9", "t=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,v1=ab",
    "t=-1700000000,v1=ab", "t=1700000000,t=1700000000,v1=ab", "t=" + "9" * 5000 + ",v1=ab",
    "t=1700000000,v1=" + "a" * 100_000, "\x00\xff\udcff", "t=1700000000\nv1=ab",
    None, b"t=1700000000,v1=ab", 1700000000, ["t=1", "v1=2"]])
def test_verify_is_false_for_any_malformed_header_and_never_raises(header):
    assert signature.verify("s3cret", header, b"[]", now=1_700_000_000) is False


def test_verify_takes_any_of_several_v1_values_for_secret_rotation():
    body = b"[]"
    good = signature.sign("new", body, now=1_700_000_000)
    old = signature.sign("old", body, now=1_700_000_000).rpartition(",")[2]
    assert signature.verify("new", f"{good},{old}", body, now=1_700_000_000)
    assert signature.verify("new", f"{old}, {good.replace(',', ', ')}", body, now=1_700_000_000)


def hook(**fields):
    return Webhook(**{"id": "abc", "name": "n", "target": "https://hooks.example.com/x", **fields})


@pytest.mark.parametrize("fields, message", [
    ({"target": "ftp://x"}, "target: must be an http(s) URL"),
    ({"events": ("click", "bounce")}, "events: each must be one of"),
    ({"events": ()}, "events: each must be one of"),
    ({"auth_type": "token"}, "auth_type: must be one of none, basic, oauth2"),
    ({"auth_type": "basic"}, "basic auth needs a username"),
    ({"auth_type": "oauth2", "auth_request_details": {"url": "https://t.example/token"}},
     "needs client_id and client_secret"),
    ({"custom_headers": {"Authorization": "x"}}, "not a header we may set"),
    ({"custom_headers": {"X-Ok": "a\r\nInjected: 1"}}, "control characters"),
])
def test_invalid_definitions_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate(hook(**fields))


def test_definition_round_trips_and_public_view_masks_secrets():
    full = config.validate(hook(
        auth_type="oauth2", signing_secret="sig", signature_scheme="engage",
        auth_request_details={"url": "https://t.example/token",
                              "body": {"client_id": "me", "client_secret": "cs"}},
        custom_headers={"X-Team": "mail"}, events=("click",)))
    assert config.from_json(full.to_json()) == full
    public = full.public()
    assert public["auth_request_details"]["body"] == {"client_id": "me", "client_secret": "********"}
    assert public["signing_secret"] == "********"
    basic = hook(auth_type="basic", auth_credentials={"username": "u", "password": "p"})
    assert basic.public()["auth_credentials"] == {"username": "u", "password": "********"}
