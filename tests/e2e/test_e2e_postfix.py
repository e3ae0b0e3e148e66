"""End to end: real messages over SMTP through the sandbox Postfix, the engage-milter
process and a real Redis; what lands in the Maildir sink is checked by the oracle."""
from __future__ import annotations

import glob
import re
import smtplib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engage.store.links import LinkStore, split_token
from newsletter import newsletter
from oracle import assert_only_tracking_changed

TRACKING = "http://track.test"
CLICK = re.compile(rb"http://track\.test/c/([A-Za-z0-9_-]+)")
TRACE_HEADERS = 4  # Postfix prepends Return-Path, X-Original-To, Delivered-To, Received
CORPUS = sorted(glob.glob("/usr/lib/python3*/test/test_email/data/msg_*.txt"))


def header_fields(head: bytes) -> list[bytes]:
    """Header fields with their continuation lines."""
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    return fields


def as_sent(delivered: bytes) -> bytes:
    """The delivered message without Postfix's trace headers, with CRLF line ends again."""
    head, _, body = delivered.partition(b"\n\n")
    fields = header_fields(head)
    assert fields[0].startswith(b"Return-Path:") and fields[3].startswith(b"Received:"), fields[:4]
    return (b"\n".join(fields[TRACE_HEADERS:]) + b"\n\n" + body).replace(b"\n", b"\r\n")


def stored_links(store: LinkStore, message: bytes) -> list[str]:
    tokens = CLICK.findall(message)
    if not tokens:
        return []
    resolved = store.resolve(tokens[0].decode())
    assert resolved is not None, "a delivered click token does not resolve"
    return [link.url for link in resolved.template.links]


@pytest.fixture
def store(redis_client):
    return LinkStore(redis_client, "test:")


@pytest.fixture
def stack(start_milter, postfix_sandbox):
    milter = start_milter()
    return milter, postfix_sandbox(milter)


def test_newsletter_is_delivered_tracked_and_otherwise_unchanged(stack, store):
    milter, postfix = stack
    original = newsletter().replace(b"MIME-Version", b'X-MSYS-API: {"campaign_id": "second"}\r\nMIME-Version')
    assert postfix.send(original, "bounce@shop.example.com", ["rcpt@example.net"]) == {}
    [delivered] = postfix.wait_delivered(1)
    sent = as_sent(delivered)
    assert b"x-msys-api" not in sent.lower()
    links = stored_links(store, sent)
    assert len(links) == 301  # 150 products + unsubscribe in html (mailto left alone), 150 text URLs
    assert_only_tracking_changed(original, sent, TRACKING, links)
    assert sent.count(b"http://track.test/i/") == 1 and sent.count(b"http://track.test/o/") == 1
    resolved = store.resolve(CLICK.findall(sent)[0].decode())
    assert resolved.template.campaign_id == "spring-sale"  # the first header counts
    assert resolved.record.metadata == {"user_id": "u-1234"}
    assert resolved.record.rcpt_to == ("rcpt@example.net",)
    queue_id = resolved.record.queue_id
    assert re.search(rf"{queue_id} accept: links=301 pixels=2 campaign='spring-sale' skipped=1", milter.log_text())


@pytest.mark.parametrize("header, reply", [
    (b'{"campaign_id": "x",}', b"5.6.0 JSON parsing error in X-MSYS-API: "),
    (b'{"metadata": "x"}', b"5.6.0 X-MSYS-API 'metadata' must be of type 'json object'"),
    (b'{"campaign_id": "' + b"c" * 65 + b'"}', b"5.6.0 smtpapi_campaign_id context is limited to 64 bytes"),
    (b'{"tags": {"a": 1}}', b"5.6.0 X-MSYS-API 'tags' must be of type 'json array'"),
    (b'{"metadata": {"n": 1e999}}', b"5.6.0 JSON parsing error in X-MSYS-API: number 1e999 is out of range"),
    (b'{"metadata": ' + b'{"a":' * 3000 + b"1" + b"}" * 3001, b"5.6.0 JSON parsing error in X-MSYS-API: nested deeper"),
    (b"=?x-no-such-charset?B?eyJjYW1wYWlnbl9pZCI6ICJjIn0=?=",
     b"5.6.0 JSON parsing error in X-MSYS-API: unknown charset"),
    (b'{"campaign_id": "\\ud800"}', b"5.6.0 JSON parsing error in X-MSYS-API: a string holds a lone surrogate"),
])
def test_invalid_header_is_refused_with_550_over_smtp(stack, header, reply):
    _, postfix = stack
    message = b"From: a@example.com\r\nX-MSYS-API: " + header + b"\r\nSubject: x\r\n\r\nbody\r\n"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        postfix.send(message)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(reply)
    assert postfix.delivered_paths() == []


def test_redis_down_answers_421_and_the_retry_is_tracked(stack, redis_server, store):
    milter, postfix = stack
    message = b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n" \
              b'<p><a href="https://example.com/a?b=1&amp;c=2">a</a></p>\r\n'
    redis_server.stop()
    try:
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)) as refused:
            postfix.send(message)
        if isinstance(refused.value, smtplib.SMTPDataError):
            assert refused.value.smtp_code == 421
            assert refused.value.smtp_error.startswith(b"4.3.3 ")
        assert "link store unavailable" in milter.log_text()
    finally:
        redis_server.start()
    postfix.send(message)
    [delivered] = postfix.wait_delivered(1)
    assert stored_links(store, delivered) == ["https://example.com/a?b=1&c=2"]
    assert postfix.delivered_paths() and milter.alive()


def test_concurrent_sessions_are_all_tracked_and_the_milter_survives(stack, store):
    """Many SMTP sessions at once: libmilter runs callbacks in parallel threads."""
    milter, postfix = stack
    original = newsletter(quoted_printable=True, links=40)

    def send(index: int) -> dict:
        return postfix.send(original, "bounce@shop.example.com", [f"r{index}@example.net"])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(send, range(48))) == [{}] * 48
    delivered = postfix.wait_delivered(48, timeout=60)
    keys = set()
    for message in delivered:
        sent = as_sent(message)
        links = stored_links(store, sent)
        assert len(links) == 81
        assert_only_tracking_changed(original, sent, TRACKING, links)
        keys.add(split_token(CLICK.findall(sent)[0].decode())[0])
    assert len(keys) == 48  # one message key per message
    assert milter.alive()


def test_one_transaction_with_several_recipients_shares_one_set_of_links(stack, store):
    _, postfix = stack
    message = b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\nhttps://example.com/x\r\n"
    postfix.send(message, "s@example.com", ["a@example.net", "b@example.net"])
    first, second = (as_sent(m) for m in postfix.wait_delivered(2))
    assert first == second
    resolved = store.resolve(CLICK.findall(first)[0].decode())
    assert sorted(resolved.record.rcpt_to) == ["a@example.net", "b@example.net"]


def _send_all(postfix, messages: dict[str, bytes]) -> dict[str, bytes]:
    """Send each message to its own recipient; the delivered copies by file name."""
    for index, raw in enumerate(messages.values()):
        postfix.send(raw, "corpus@example.com", [f"m{index}@example.org"])
    delivered = postfix.wait_delivered(len(messages), timeout=60)
    by_rcpt = {re.search(rb"\nDelivered-To: (\S+)", m).group(1).decode(): m for m in delivered}
    return {name: by_rcpt[f"m{index}@example.org"] for index, name in enumerate(messages)}


@pytest.mark.skipif(not CORPUS, reason="Python's email test corpus is missing "
                    "(Debian package libpython3.11-testsuite; scripts/install-deps installs it)")
def test_python_email_corpus_comes_out_valid_with_nothing_lost(start_milter, postfix_sandbox, store):
    """Messages nobody here wrote, each with an X-MSYS-API header added: through Postfix
    without and with the milter; the tracked copy may differ from the untracked one only
    by tracking (and the header must be gone)."""
    messages = {}
    for path in CORPUS:
        raw = Path(path).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        messages[Path(path).name] = b'X-MSYS-API: {"campaign_id": "corpus"}\r\n' + raw
    plain = _send_all(postfix_sandbox(None), messages)
    tracked = _send_all(postfix_sandbox(start_milter()), messages)
    rewritten = 0
    for name in messages:
        before, after = as_sent(plain[name]), as_sent(tracked[name])
        assert b"X-MSYS-API" in before and b"x-msys-api" not in after.lower(), name
        if after.startswith(b"\r\n") and re.match(rb"X-MSYS-API: [^\r]*\r\n(?![!-9;-~]+:)", before):
            # msg_19 has no header section: its body starts right after our X-MSYS-API
            # line. With that header deleted Postfix writes an empty header section (a
            # blank first line); the body itself is unchanged.
            after = after[2:]
        assert_only_tracking_changed(before, after, TRACKING, stored_links(store, after))
        rewritten += b"http://track.test/" in after
    assert rewritten >= 4, "the corpus should exercise real rewriting (4 messages hold URLs)"
