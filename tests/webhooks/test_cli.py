"""engage-webhooks create|list|update|delete|batches|check-config, in-process on real Redis."""
from __future__ import annotations

import base64
import json

import pytest

from engage.store import keys
from engage.webhooks import signature
from engage.webhooks.keys import Keys

from .conftest import PREFIX


def test_create_sends_the_validation_ping_and_stores_the_webhook(receiver, run, store,
                                                                 redis_client):
    rec = receiver()
    code, out, _ = run("create", "--name", "crm", "--target", rec.url, "--events", "click,open")
    assert code == 0
    hook_id = out.strip()
    (ping,) = rec.requests
    assert json.loads(ping.body) == [{"msys": {}}] and ping.batch_id
    assert ping.headers["content-type"] == "application/json"
    hook = store.get(hook_id)
    assert (hook.name, hook.target, hook.events, hook.active) == ("crm", rec.url, ("click", "open"), True)
    for shard in keys.shard_ids():  # one group per shard stream, at its end
        groups = redis_client.xinfo_groups(Keys(PREFIX).events(shard))
        assert [(g["name"].decode(), g["last-delivered-id"]) for g in groups] == [
            (Keys.group(hook_id), b"0-0")]
    assert not redis_client.exists(Keys(PREFIX).events(keys.LAYOUT1))  # layout 1's: never made


@pytest.mark.parametrize("answer", [500, 302, (200, b"", 5)])
def test_create_refuses_a_target_that_does_not_answer_2xx(receiver, run, store, answer):
    rec = receiver(answer)
    code, _, err = run("create", "--name", "crm", "--target", rec.url)
    assert code == 1 and "refused the validation ping" in err
    assert store.all() == []


def test_create_refuses_an_unreachable_target(run, store):
    code, _, err = run("create", "--name", "x", "--target", "http://127.0.0.1:9/hook")
    assert code == 1 and "refused the validation ping" in err and store.all() == []


def test_ping_carries_auth_headers_and_signature_secrets_are_masked(receiver, run, monkeypatch):
    rec = receiver()
    monkeypatch.setenv("HOOK_PASSWORD", "from-env")
    code, out, _ = run("create", "--name", "signed", "--target", rec.url, "--auth", "basic",
                       "--username", "u", "--password", "env:HOOK_PASSWORD",
                       "--header", "X-Team: mail", "--sign")
    assert code == 0
    hook_id, secret_line = out.strip().splitlines()
    secret = secret_line.rpartition(" ")[2]
    (ping,) = rec.requests
    assert ping.headers["authorization"] == "Basic " + base64.b64encode(b"u:from-env").decode()
    assert ping.headers["x-team"] == "mail"
    assert secret.startswith("whsec_") and "x-engage-signature" not in ping.headers
    assert signature.verify_standard(secret, ping.headers, ping.body)
    code, out, _ = run("list", "--json")
    (listed,) = json.loads(out)
    assert listed["id"] == hook_id and listed["auth_credentials"]["password"] == "********"
    assert listed["signing_secret"] == "********" and "from-env" not in out and secret not in out
    code, out, _ = run("list")
    assert hook_id in out and "basic" in out and rec.url in out


def test_update_pings_only_when_delivery_changes_and_keeps_the_old_on_refusal(receiver, run, store):
    first, second, broken = receiver(), receiver(), receiver(500)
    _, out, _ = run("create", "--name", "a", "--target", first.url)
    hook_id = out.strip()
    assert run("update", hook_id, "--events", "click", "--name", "b", "--inactive")[0] == 0
    assert len(first.requests) == 1
    hook = store.get(hook_id)
    assert (hook.name, hook.events, hook.active) == ("b", ("click",), False)
    assert run("update", hook_id, "--target", second.url, "--active")[0] == 0
    assert len(second.requests) == 1 and store.get(hook_id).target == second.url
    code, _, err = run("update", hook_id, "--target", broken.url)
    assert code == 1 and store.get(hook_id).target == second.url


def test_delete_removes_the_webhook_and_unknown_ids_fail(receiver, run, store):
    rec = receiver()
    hook_id = run("create", "--name", "a", "--target", rec.url)[1].strip()
    assert run("delete", hook_id)[0] == 0
    assert store.all() == []
    code, _, err = run("delete", hook_id)
    assert code == 1 and "not found" in err


def test_batches_shows_the_attempts_of_the_last_day(receiver, run, add_hook, append, start_worker):
    failed: list[str] = []
    rec = receiver(lambda r: 200 if failed else failed.append(r.batch_id) or 500)
    hook = add_hook(rec.url)
    start_worker()
    append(3, shard=7)  # one shard: one batch
    rec.wait_events(3)
    code, out, _ = run("batches", hook.id)
    assert code == 0 and "pending batches: 0" in out
    rows = [line.split() for line in out.splitlines() if failed[0] in line]
    # TIME (2 words), BATCH, SIZE, ATTEMPT, CODE, LATENCY MS, OUTCOME, ERROR
    assert [row[3:6] + row[7:8] for row in rows] == [["3", "2", "200", "delivered"],
                                                     ["3", "1", "500", "retry"]]


def test_check_config_lists_the_webhook_settings(run):
    code, out, _ = run("check-config")
    assert code == 0 and "webhooks.batch_size = 100" in out and "webhooks.timeout = 1.0" in out


def test_discard_drops_dead_letters(run, store, add_hook, redis_client):
    hook = add_hook("http://127.0.0.1:9/x")
    for n, shard in enumerate((5, 17, keys.LAYOUT1)):  # layout 1's: still listed until migrated
        redis_client.xadd(Keys(PREFIX).dead(shard), {
            "webhook": hook.id, "batch": f"b{n}", "size": 1, "attempts": 3, "code": 0,
            "error": "x", "created": 0, "ids": "", "body": "[]"}, id=f"{1000 + n}-0")
    listed = store.dead_letters()
    assert [(d["batch"], d["id"]) for d in listed] == [  # newest first, over the shards
        ("b2", "1002-0"), ("b1", f"{keys.SHARD_TAGS[17]}:1001-0"),
        ("b0", f"{keys.SHARD_TAGS[5]}:1000-0")]
    first = listed[1]["id"]
    assert run("discard", first)[0] == 0 and len(store.dead_letters()) == 2
    assert run("discard", first)[0] == 1
    assert run("discard", "1001-0")[0] == 1 and run("discard", "zz:1000-0")[0] == 1
    assert run("discard")[0] == 1  # neither ids nor --all
    assert run("discard", "--all", "--webhook", hook.id)[0] == 0 and store.dead_letters() == []


def test_reactivated_webhook_skips_what_happened_while_inactive(receiver, run, append,
                                                                start_worker):
    rec = receiver()
    hook_id = run("create", "--name", "a", "--target", rec.url, "--inactive")[1].strip()
    start_worker()
    append(3)
    assert run("update", hook_id, "--active")[0] == 0
    append(2, start=10)
    events = rec.wait_events(2)
    assert sorted(e["message_id"] for e in events) == ["<m10@example.com>", "<m11@example.com>"]
