"""The worker against real loopback receivers: batching, retries, timeouts, auth, signature."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import parse_qs

from engage.store import keys
from engage.webhooks import signature
from engage.webhooks.cli import main as cli
from engage.webhooks.keys import Keys

from .conftest import PREFIX, REPO


def pending_entries(redis_client, hook_id):
    """Events read by the webhook's groups and not yet acknowledged, over every shard."""
    return sum(redis_client.xpending(Keys(PREFIX).events(s), Keys.group(hook_id))["pending"]
               for s in keys.shard_ids())


def test_events_arrive_in_sparkpost_batches_of_at_most_batch_size(receiver, add_hook, append,
                                                                   start_worker, redis_client):
    rec = receiver()
    hook = add_hook(rec.url, events=("click",))
    start_worker()
    ids = append(25)
    append(3, start=100, kind="open")  # not subscribed
    events = rec.wait_events(25)
    assert sorted(e["message_id"] for e in events) == sorted(ids)
    batches = rec.delivered()
    assert all(len(json.loads(r.body)) <= 10 for r in batches) and len(batches) >= 3
    assert len({r.batch_id for r in batches}) == len(batches) and all(r.batch_id for r in batches)
    assert all(r.headers["content-type"] == "application/json" for r in batches)
    time.sleep(0.5)
    assert {e["type"] for e in rec.delivered_events()} == {"click"}
    assert pending_entries(redis_client, hook.id) == 0


def test_a_lone_event_waits_for_the_batch_interval_then_goes(receiver, add_hook, append,
                                                             start_worker):
    rec = receiver()
    add_hook(rec.url)
    start_worker(webhook_batch_interval=0.5)
    time.sleep(0.3)
    appended = time.time()
    append(1)
    rec.wait_events(1)
    waited = rec.delivered()[0].at - appended
    assert 0.4 <= waited < 2.0


def test_receiver_failing_three_times_gets_everything_once(receiver, add_hook, append,
                                                           start_worker, store, redis_client):
    failures = []

    def flaky(request):
        if len(failures) < 3:
            failures.append(request.batch_id)
            return 500
        return 200

    rec = receiver(flaky)
    hook = add_hook(rec.url)
    start_worker(webhook_batch_size=100)
    ids = append(20, shard=2)  # one shard: one batch
    rec.wait_events(20)
    time.sleep(0.3)
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert len(set(failures)) == 1 and failures[0] in {r.batch_id for r in rec.delivered()}
    outcomes = [(a.attempt, a.code, a.outcome) for a in reversed(store.attempts(hook.id))]
    assert outcomes[:4] == [(1, 500, "retry"), (2, 500, "retry"), (3, 500, "retry"),
                            (4, 200, "delivered")]
    assert store.pending(hook.id) == [] and pending_entries(redis_client, hook.id) == 0


def test_hanging_receiver_times_out_and_is_retried_while_others_keep_flowing(
        receiver, add_hook, append, start_worker, store):
    hanging = receiver((200, b"", 30))
    healthy = receiver()
    slow = add_hook(hanging.url, name="slow")
    add_hook(healthy.url, name="healthy")
    start_worker()
    started = time.time()
    append(5)
    healthy.wait_events(5, timeout=3)
    append(5, start=5)
    healthy.wait_events(10, timeout=3)
    assert time.time() - started < 2.5  # not held up by the 1 s timeouts next door
    deadline = time.time() + 5
    while not any(a.outcome == "retry" for a in store.attempts(slow.id)) and time.time() < deadline:
        time.sleep(0.05)
    failed = store.attempts(slow.id)[-1]
    assert failed.code == 0 and "timed out" in failed.error and 900 <= failed.latency_ms < 3000
    hanging.answer = 200
    hanging.release.set()
    hanging.wait_events(10, timeout=10)


def test_after_the_retry_window_a_batch_is_parked_and_replay_delivers_it(
        receiver, add_hook, append, start_worker, store, redis_client, wh_settings, monkeypatch,
        capsys):
    rec = receiver(503)
    hook = add_hook(rec.url)
    start_worker(webhook_retry_window=1.0)
    ids = append(4, shard=6)  # one shard: one batch
    deadline = time.time() + 8
    while not store.dead_letters() and time.time() < deadline:
        time.sleep(0.05)
    (dead,) = store.dead_letters()
    assert dead["webhook"] == hook.id and dead["size"] == "4" and dead["code"] == "503"
    assert int(dead["attempts"]) >= 2
    assert pending_entries(redis_client, hook.id) == 0 and store.pending(hook.id) == []
    rec.answer = 200
    monkeypatch.setenv("ENGAGE_REDIS_URL", wh_settings.redis_url)
    monkeypatch.setenv("ENGAGE_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ENGAGE_CONFIG", "/dev/null")
    assert cli(["dead-letters"]) == 0
    assert dead["id"] in capsys.readouterr().out
    assert cli(["replay", "--all"]) == 0
    events = rec.wait_events(4)
    assert sorted(e["message_id"] for e in events) == sorted(ids)
    assert rec.delivered()[0].batch_id == dead["batch"] and store.dead_letters() == []


def test_basic_auth_and_custom_headers_are_sent(receiver, add_hook, append, start_worker):
    expected = "Basic " + base64.b64encode(b"hooker:pa:ss").decode()
    rec = receiver(lambda r: 200 if r.headers.get("authorization") == expected else 401)
    add_hook(rec.url, auth_type="basic", auth_credentials={"username": "hooker", "password": "pa:ss"},
             custom_headers={"X-Team": "mail"})
    start_worker()
    append(3)
    rec.wait_events(3)
    assert {r.status for r in rec.requests} == {200}
    assert rec.delivered()[0].headers["x-team"] == "mail"


def test_oauth2_token_is_fetched_reused_and_renewed_after_401(receiver, add_hook, append,
                                                               start_worker):
    issued: list[str] = []
    token_calls: list[dict[str, list[str]]] = []

    def token_endpoint(request):
        token_calls.append(parse_qs(request.body.decode()))
        issued.append(f"tok-{len(issued) + 1}")
        return 200, json.dumps({"access_token": issued[-1], "token_type": "bearer",
                                "expires_in": 3600}).encode(), 0

    tokens = receiver(token_endpoint)
    target = receiver(lambda r: 200 if issued and r.headers.get("authorization")
                      == f"Bearer {issued[-1]}" else 401)
    add_hook(target.url, auth_type="oauth2", auth_request_details={
        "url": tokens.url, "body": {"client_id": "cid", "client_secret": "csecret"}})
    start_worker()
    append(2, shard=1)  # one shard: one batch each time
    target.wait_events(2)
    append(2, start=2, shard=1)
    target.wait_events(4)
    assert len(token_calls) == 1  # reused while valid
    assert token_calls[0] == {"grant_type": ["client_credentials"], "client_id": ["cid"],
                              "client_secret": ["csecret"]}
    issued.append("tok-rotated")  # the target now wants a token we do not have: 401
    append(2, start=4, shard=1)
    target.wait_events(6)
    assert len(token_calls) == 2
    assert [r.status for r in target.requests][-2:] == [401, 200]


def test_signature_header_verifies_at_the_receiver(receiver, add_hook, append, start_worker):
    """The X-Engage-Signature option (signature_scheme engage), alone."""
    secret = "whsec-test"
    rec = receiver(lambda r: 200 if signature.verify(
        secret, r.headers.get("x-engage-signature", ""), r.body) else 403)
    add_hook(rec.url, signing_secret=secret, signature_scheme="engage")
    start_worker()
    append(3)
    rec.wait_events(3)
    assert {r.status for r in rec.requests} == {200}
    assert not any("webhook-signature" in r.headers for r in rec.requests)


def test_inactive_webhook_gets_nothing_and_deleted_one_stops(receiver, add_hook, append,
                                                            start_worker, store, redis_client):
    off, gone = receiver(), receiver()
    add_hook(off.url, active=False)
    deleted = add_hook(gone.url)
    start_worker()
    store.delete(deleted.id)
    time.sleep(1.2)  # the worker notices within a second
    append(3)
    time.sleep(0.8)
    assert off.requests == [] and gone.requests == []
    assert not redis_client.exists(Keys(PREFIX).hook(deleted.id))
    for shard in keys.shard_ids():
        groups = [g["name"].decode() for g in redis_client.xinfo_groups(Keys(PREFIX).events(shard))]
        assert Keys.group(deleted.id) not in groups


def test_two_workers_share_the_work_without_duplicates(receiver, add_hook, append, start_worker):
    rec = receiver()
    add_hook(rec.url)
    start_worker(webhook_batch_size=5)
    start_worker(webhook_batch_size=5)
    ids = append(60)
    rec.wait_events(60)
    time.sleep(0.3)
    counts = Counter(e["message_id"] for e in rec.delivered_events())
    assert set(counts) == set(ids) and set(counts.values()) == {1}


def test_unreachable_token_endpoint_is_a_failed_attempt_then_retried(receiver, add_hook, append,
                                                                      start_worker, store):
    calls: list[int] = []

    def token_endpoint(request):
        calls.append(1)
        if len(calls) == 1:
            return 503
        return 200, b'{"access_token": "t", "expires_in": 60}', 0

    tokens = receiver(token_endpoint)
    target = receiver(lambda r: 200 if r.headers.get("authorization") == "Bearer t" else 401)
    hook = add_hook(target.url, auth_type="oauth2", auth_request_details={
        "url": tokens.url, "body": {"client_id": "c", "client_secret": "s"}})
    start_worker()
    append(2)
    target.wait_events(2)
    first = store.attempts(hook.id)[-1]
    assert (first.code, first.outcome) == (0, "retry") and "token endpoint answered 503" in first.error


def test_webhook_code_never_imports_flask():
    code = ("import sys, engage.webhooks.cli, engage.webhooks.worker; "
            "sys.exit(1 if any(m.split('.')[0] == 'flask' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO / "redirector").returncode == 0
