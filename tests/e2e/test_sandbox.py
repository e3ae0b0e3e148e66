"""The test infrastructure itself: sandbox Postfix, private Redis, milter fixture."""
from __future__ import annotations

import importlib.util
import smtplib

import pytest

from support.procs import crlf_to_lf, free_port, split_message

HEADERS = (b"From: Sender <sender@example.com>\r\n"
           b"To: rcpt@example.org\r\n"
           b"Subject: sandbox check\r\n"
           b"Message-ID: <sandbox-1@example.com>\r\n"
           b"Date: Sun, 01 Nov 2026 10:00:00 +0000\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n")
BODY = (b"Hello,\r\n"
        b"\r\n"
        b".a line starting with a dot (dot-stuffed on the wire)\r\n"
        b"..two dots\r\n"
        b"8-bit: caf\xc3\xa9 \xe2\x82\xac\r\n"
        b"trailing spaces and a tab   \t\r\n"
        + b"x" * 990 + b"\r\n"
        b"https://example.com/not-a-link-here?a=1&b=2\r\n"
        b"\r\n"
        b"last line\r\n")
MESSAGE = HEADERS + b"\r\n" + BODY


def test_message_through_postfix_without_milter_arrives_intact(postfix_sandbox):
    postfix = postfix_sandbox(None)
    assert postfix.send(MESSAGE, "sender@example.com", ["rcpt@example.org"]) == {}
    [delivered] = postfix.wait_delivered(1)
    head, body = split_message(delivered)
    assert body == crlf_to_lf(BODY)
    # Postfix only prepends its trace headers; the original header block is unchanged.
    assert head.endswith(crlf_to_lf(HEADERS).rstrip(b"\n"))
    prepended = head[: -len(crlf_to_lf(HEADERS).rstrip(b"\n"))]
    assert prepended.startswith(b"Return-Path: <sender@example.com>\n")
    assert b"\nDelivered-To: rcpt@example.org\n" in prepended
    assert b"Received: from " in prepended
    assert "status=sent (delivered to maildir)" in postfix.log_text()


def test_each_test_gets_an_empty_sink_and_one_file_per_recipient(postfix_sandbox):
    postfix = postfix_sandbox(None)
    assert postfix.delivered_paths() == []
    postfix.send(MESSAGE, "sender@example.com", ["a@example.org", "b@example.net"])
    messages = postfix.wait_delivered(2)
    assert len(messages) == 2
    assert sorted(m.split(b"Delivered-To: ", 1)[1].split(b"\n", 1)[0] for m in messages) == [
        b"a@example.org", b"b@example.net"]


def test_postfix_tempfails_while_the_milter_is_down_then_recovers(postfix_sandbox):
    dead = f"inet:{free_port()}@127.0.0.1"
    postfix = postfix_sandbox(dead)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        postfix.send(MESSAGE)
    assert refused.value.smtp_code == 451
    assert b"4.7.1" in refused.value.smtp_error
    assert "Milter service" in postfix.log_text()
    # Same instance, switched back by reload.
    postfix = postfix_sandbox(None)
    postfix.send(MESSAGE)
    assert len(postfix.wait_delivered(1)) == 1


def test_private_instance_relays_into_the_shared_one(postfix_sandbox):
    shared = postfix_sandbox(None)
    relay = postfix_sandbox(None, relay_port=shared.smtp_port)
    assert relay.smtp_port != shared.smtp_port
    relay.send(MESSAGE)
    [delivered] = shared.wait_delivered(1)
    assert split_message(delivered)[1] == crlf_to_lf(BODY)
    assert f"sandbox-{relay.smtp_port}.engage.test".encode() in delivered
    assert f"relay=127.0.0.1[127.0.0.1]:{shared.smtp_port}" in relay.log_text()


def test_redis_server_stop_and_start_keeps_port_and_data(redis_server, redis_client):
    import redis

    redis_client.set("sandbox:key", b"value")
    port = redis_server.port
    redis_server.stop()
    assert not redis_server.running
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_server.url, socket_connect_timeout=1).ping()
    redis_server.start()
    assert redis_server.port == port
    assert redis.Redis.from_url(redis_server.url).get("sandbox:key") == b"value"  # AOF


def test_redis_client_starts_each_test_on_an_empty_db(redis_client):
    assert redis_client.dbsize() == 0


@pytest.mark.skipif(importlib.util.find_spec("engage_milter.main") is None,
                    reason="engage_milter.main does not exist yet")
def test_real_milter_is_wired_between_postfix_and_the_sink(start_milter, postfix_sandbox):
    milter = start_milter()
    assert milter.alive() and milter.socket.startswith("inet:")
    assert milter.env["ENGAGE_KEY_PREFIX"] == "test:"
    postfix = postfix_sandbox(milter)
    postfix.send(MESSAGE)
    [delivered] = postfix.wait_delivered(1)
    assert b"Subject: sandbox check" in delivered
    assert milter.alive()
    assert milter.log_text()
