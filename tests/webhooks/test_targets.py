"""Webhook targets on loopback, link-local and private networks are refused unless
``[webhooks] allow_private_targets``: when a webhook is created or changed (the name is
resolved, nothing is sent), and at every delivery by the real worker, against the
address actually connected to (a name that rebinds to 127.0.0.1 after creation, a
connection that lands on loopback). The receivers here are real, on 127.0.0.1."""
from __future__ import annotations

import socket
import time

import pytest

from engage.webhooks import targets, transport

PUBLIC = "93.184.216.34"  # a global unicast address (never connected to here)


@pytest.fixture
def strict(run, monkeypatch):
    """engage-webhooks with [webhooks] allow_private_targets off (the default)."""
    monkeypatch.delenv("ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS")
    return run


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254",
                                  "10.1.2.3", "192.168.0.10", "[::ffff:127.0.0.1]",
                                  "[fd00::1]", "0.0.0.0", "100.64.0.1"])
def test_create_refuses_non_public_targets_without_sending_anything(receiver, strict, store, host):
    rec = receiver()
    port = rec.server.server_address[1]
    code, _, err = strict("create", "--name", "x", "--target", f"http://{host}:{port}/hook")
    assert code == 1 and "webhook targets must be public" in err, err
    assert store.all() == [] and rec.requests == []


def test_create_refuses_a_private_oauth2_token_endpoint(strict, store, monkeypatch):
    monkeypatch.setattr(targets, "resolve", lambda host, port: [PUBLIC] if host == "hooks.example"
                        else ["127.0.0.1"])
    code, _, err = strict("create", "--name", "x", "--target", "https://hooks.example/in",
                       "--auth", "oauth2", "--token-url", "http://tokens.example/token",
                       "--client-id", "c", "--client-secret", "s")
    assert code == 1 and "tokens.example resolves to 127.0.0.1 is a loopback" in err, err
    assert store.all() == []


def test_allow_private_targets_lets_the_tests_receivers_in(receiver, run, store):
    rec = receiver()
    code, out, _ = run("create", "--name", "x", "--target", rec.url)
    assert code == 0 and store.get(out.strip()).target == rec.url and len(rec.requests) == 1


def test_the_worker_refuses_at_delivery_what_was_allowed_at_creation(
        receiver, add_hook, append, start_worker, store):
    """A webhook stored while private targets were allowed (or whose name now resolves to
    loopback) gets nothing once they are not: its attempts fail with the reason."""
    rec = receiver()
    hook = add_hook(rec.url)
    append(3)
    start_worker(webhook_allow_private_targets=False)

    def refused_attempts():
        return [a for a in store.attempts(hook.id) if "TargetRefused" in a.error]
    deadline = time.monotonic() + 10
    while not refused_attempts() and time.monotonic() < deadline:
        time.sleep(0.05)
    attempt = refused_attempts()[0]
    assert attempt.code == 0 and attempt.outcome in ("retry", "dead")
    assert "127.0.0.1 resolves to no public address" in attempt.error
    assert rec.requests == []


def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery(receiver, monkeypatch):
    """Public when checked, 127.0.0.1 when delivering: the connect-time check refuses."""
    rec = receiver()
    port = rec.server.server_address[1]
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    monkeypatch.setattr(targets, "resolve", lambda host, port: next(answers))
    url = f"http://rebind.example:{port}/hook"
    targets.check_target(url, allow_private=False)  # creation: fine
    answer = transport.post(url, b"[]", {}, 2)
    assert answer.status == 0 and "TargetRefused" in answer.error
    assert rec.requests == []


def test_the_address_actually_connected_to_is_checked(receiver, monkeypatch):
    """A public answer from DNS, but the connection lands on loopback (a rewriting
    resolver, a transparent proxy): refused after connecting, nothing sent."""
    rec = receiver()
    port = rec.server.server_address[1]
    monkeypatch.setattr(targets, "resolve", lambda host, port: [PUBLIC])
    real = socket.create_connection
    monkeypatch.setattr(targets.socket, "create_connection",
                        lambda address, *args: real(("127.0.0.1", address[1]), *args))
    answer = transport.post(f"http://public.example:{port}/hook", b"[]", {}, 2)
    assert answer.status == 0 and "connected to 127.0.0.1, not a public address" in answer.error
    assert rec.requests == []


def test_through_a_proxy_the_target_is_resolved_before_sending(receiver, monkeypatch):
    rec = receiver()
    monkeypatch.setenv("http_proxy", rec.url.rpartition("/")[0])  # the proxy is ours to pick
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    answer = transport.post("http://127.0.0.2:9/hook", b"[]", {}, 2)
    assert answer.status == 0 and "127.0.0.2 is a loopback address" in answer.error
    assert rec.requests == []


@pytest.mark.parametrize("ip, reason", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"),
    ("fe80::1%eth0", "link-local"), ("10.0.0.1", "private"), ("172.16.5.4", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "private"), ("fd00::1", "private"),
    ("224.0.0.1", "private or reserved"), ("ff02::1", "private or reserved"),
    ("0.0.0.0", "private"), ("::ffff:10.0.0.1", "private"), ("2002:a00:1::1", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("203.0.113.9", "private or reserved"),
    (PUBLIC, None), ("2606:4700:4700::1111", None), ("::ffff:93.184.216.34", None)])
def test_refusal(ip, reason):
    found = targets.refusal(ip)
    assert (found is None) if reason is None else (reason in found), found
