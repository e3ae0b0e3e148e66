"""Standard Webhooks signing, whsec_ secrets, the signature scheme per webhook, and the
Resend-shaped ``events`` body: pure functions and the CLI on real Redis."""
from __future__ import annotations

import base64
import json
import time

import pytest
import standardwebhooks

from engage.webhooks import config, deliver, signature
from engage.webhooks.config import ConfigError, Webhook
from engage.webhooks.payload import ping_body, tag_object, v1_event

from .conftest import make_event


def hook(**fields) -> Webhook:
    return Webhook(id="h1", name="n", target="https://example.com/hook", **fields)


def test_new_secrets_are_whsec_with_32_random_bytes():
    first, second = signature.new_secret(), signature.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(signature.secret_key(first)) == 32


@pytest.mark.parametrize("secret", ["plain", "whsec_not base64!", "whsec_" + "QQ==",
                                    "whsec_" + base64.b64encode(b"x" * 200).decode()])
def test_secrets_that_are_not_standard_are_refused(secret):
    with pytest.raises(ValueError):
        signature.secret_key(secret)
    with pytest.raises(ConfigError, match="signing_secret"):
        config.validate(hook(signing_secret=secret))
    assert config.validate(hook(signing_secret=secret, signature_scheme="engage"))


def test_headers_match_what_the_reference_library_computes():
    secret, body, now = signature.new_secret(), b'{"type":"email.opened"}', time.time()
    headers = signature.standard_headers(secret, "batch-1", body, now)
    assert headers["webhook-id"] == headers["svix-id"] == "batch-1"
    assert headers["webhook-timestamp"] == headers["svix-timestamp"] == str(int(now))
    reference = standardwebhooks.Webhook(secret)
    from datetime import datetime, timezone
    expected = reference.sign("batch-1", datetime.fromtimestamp(int(now), timezone.utc), body)
    assert headers["webhook-signature"] == headers["svix-signature"] == expected
    assert signature.verify_standard(secret, headers, body)
    assert not signature.verify_standard(secret, headers, body + b" ")
    assert not signature.verify_standard(signature.new_secret(), headers, body)
    assert not signature.verify_standard(secret, headers, body, now=now + 301)
    assert signature.standard_headers("", "b", body, now) == {
        "webhook-id": "b", "webhook-timestamp": str(int(now)), "svix-id": "b",
        "svix-timestamp": str(int(now))}


def test_scheme_decides_the_headers_and_custom_headers_cannot_forge_them():
    secret = signature.new_secret()
    standard = deliver.headers_for(hook(signing_secret=secret), b"{}", "b1")
    assert "X-Engage-Signature" not in standard and standard["webhook-id"] == "b1"
    engage = deliver.headers_for(hook(signing_secret="s", signature_scheme="engage"), b"{}", "b1")
    assert signature.verify("s", engage["X-Engage-Signature"], b"{}")
    assert not any(name.startswith(("webhook-", "svix-")) for name in engage)
    for name in ("webhook-signature", "Svix-Id", "X-Engage-Signature"):
        with pytest.raises(ConfigError, match="not a header we may set"):
            config.validate(hook(custom_headers={name: "x"}))


def test_webhooks_stored_before_the_standard_keep_signing_as_they_did():
    old = {"id": "h", "name": "n", "target": "https://e.example/", "events": ["click"],
           "signing_secret": "legacy-secret"}
    assert config.from_json(json.dumps(old)).signature_scheme == "engage"
    unsigned = config.from_json(json.dumps({**old, "signing_secret": ""}))
    assert unsigned.signature_scheme == "standard"
    new = config.validate(hook(signing_secret=signature.new_secret()))
    assert config.from_json(new.to_json()) == new
    assert config.DEFAULT_EVENTS == ("click", "open")  # what engage-webhooks create subscribes


def test_the_events_body_has_resend_fields_and_ours_beside():
    click = dict(make_event(1), email_id="E1", referer="https://r.example/", event_id="7",
                 rcpt_tags=["news", "plan=gold", "a=b=c"], engage={"verdict": "scanner"})
    event = v1_event(click)
    assert list(event) == ["type", "created_at", "data"]
    assert event["type"] == "email.clicked" and event["created_at"] == click["timestamp"]
    data = event["data"]
    assert data["email_id"] == "E1" and data["from"] == click["friendly_from"]
    assert data["to"] == ["User1@Example.com"] and data["subject"] == "Hello"
    assert data["created_at"] == click["injection_time"]
    assert data["click"] == {"link": click["target_link_url"], "ipAddress": "192.0.2.7",
                             "userAgent": "Mozilla/5.0", "timestamp": click["timestamp"]}
    assert data["tags"] == {"news": "true", "plan": "gold", "a": "b=c"}
    assert data["headers"] == [{"name": "X-Tags", "value": '["news","plan=gold","a=b=c"]'},
                               {"name": "X-Metadata", "value": '{"n":1}'}]
    assert (data["campaign_id"], data["metadata"], data["verdict"]) == ("spring", {"n": 1},
                                                                        "scanner")
    assert data["engage"] == {"verdict": "scanner"} and data["event_id"] == "7"
    opened = v1_event(dict(make_event(2, "initial_open"), rcpt_to_list=["a@x.example", "b@x.example"]))
    assert opened["type"] == "email.opened" and "click" not in opened["data"]
    assert opened["data"]["to"] == ["a@x.example", "b@x.example"]
    assert opened["data"]["verdict"] == "" and "engage" not in opened["data"]
    assert tag_object([]) == {}


def test_the_events_ping_is_json_with_a_real_time():
    ping = json.loads(ping_body("events", now=1_700_000_000))
    assert ping == {"type": "ping", "created_at": "2023-11-14T22:13:20.000Z", "data": {}}
    assert ping_body("sparkpost") == b'[{"msys":{}}]'


def test_cli_signature_option_and_scheme_changes(receiver, run, store):
    rec = receiver()
    code, out, _ = run("create", "--name", "old-style", "--target", rec.url,
                       "--signature", "engage", "--sign")
    assert code == 0
    hook_id, secret_line = out.strip().splitlines()
    secret = secret_line.rpartition(" ")[2]
    assert not secret.startswith("whsec_") and store.get(hook_id).signature_scheme == "engage"
    assert signature.verify(secret, rec.requests[-1].headers["x-engage-signature"],
                            rec.requests[-1].body)
    code, _, err = run("update", hook_id, "--signature", "standard")
    assert code == 1 and "whsec_" in err and store.get(hook_id).signature_scheme == "engage"
    code, out, _ = run("update", hook_id, "--signature", "standard", "--sign")
    assert code == 0
    secret = out.strip().splitlines()[-1].rpartition(" ")[2]
    assert secret.startswith("whsec_")
    assert signature.verify_standard(secret, rec.requests[-1].headers, rec.requests[-1].body)
    code, out, _ = run("list")
    assert "standard" in out
