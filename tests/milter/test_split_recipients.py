"""split_recipients in-process (Milter.testctx, real Redis): the reply sequence of RCPT TO
(first accepted, the others 452 4.5.3 until the transaction ends), what is negotiated
with the MTA in each mode, and the connects that are never split (Postfix's
non_smtpd_milters emulation). The end-to-end proof is tests/e2e/test_e2e_split.py."""
from __future__ import annotations

import io
import socket
from dataclasses import replace

import Milter
import Milter.test  # noqa: F401  (makes @noreply callbacks return CONTINUE under TestCtx)
import pytest
from Milter import testctx

from engage import settings as engage_settings
from engage.settings import Settings
from engage.store.links import LinkStore
from engage_milter import filter as milter_filter
from engage_milter import replies

BODY = (b"From: Shop <news@shop.example>\r\nSubject: Sale\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<html><body><a href="https://shop.example/p">Buy</a></body></html>\r\n')
TOO_MANY = ("452", "4.5.3", "Too many recipients")


@pytest.fixture
def store(redis_client):
    return LinkStore(redis_client, "t:")


def connect(settings: Settings, store: LinkStore, hostaddr=("192.0.2.7", 40123)):
    """A TestCtx after negotiation and a connect from HOSTADDR, as libmilter delivers it
    ((address, port) for TCP clients; TestCtx's own _connect passes a bare string)."""
    # What an MTA offers: every protocol step. TestCtx hands this very list to negotiate(),
    # which edits it in place, so each test starts from a fresh one.
    testctx.TestCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    ctx = testctx.TestCtx()
    Milter.factory = lambda: milter_filter.TrackingMilter(settings, store)
    assert ctx._negotiate() == Milter.CONTINUE
    if not ctx._protocol & Milter.P_NOCONNECT:
        assert Milter.connect_callback(ctx, "client.example", socket.AF_INET, hostaddr) \
            == Milter.CONTINUE
    ctx._setsymval("i", "4QSPLIT")
    return ctx


def rcpt_replies(ctx, rcpts):
    """(verdict, reply) of each RCPT TO; the reply is reset before each one."""
    answers = []
    for rcpt in rcpts:
        ctx._reply = None
        answers.append((ctx._envrcpt(f"<{rcpt}>"), ctx._reply))
    return answers


def finish(ctx):
    """DATA and end of message; the message record the milter registered."""
    head, body = BODY.split(b"\r\n\r\n", 1)
    for line in head.decode().split("\r\n"):
        name, value = line.split(":", 1)
        ctx._header(name, value.lstrip())
    ctx._eoh()
    ctx._feed_body(io.BytesIO(body))
    assert ctx._eom() == Milter.ACCEPT
    token = ctx._body.getvalue().split(b"https://t.example/c/")[1].split(b'"')[0].decode()
    return ctx._priv.store.resolve(token).record


@pytest.fixture
def on(redis_server):
    return Settings(redis_url=redis_server.url, key_prefix="t:",
                    tracking_url="https://t.example", split_recipients=True)


def test_first_rcpt_is_accepted_and_every_later_one_gets_452(on, store):
    ctx = connect(on, store)
    assert ctx._envfrom("<bounce@shop.example>") == Milter.CONTINUE
    answers = rcpt_replies(ctx, ["ann@example.net", "bob@example.net", "cy@example.org"])
    assert answers == [(Milter.CONTINUE, None), (Milter.TEMPFAIL, TOO_MANY),
                       (Milter.TEMPFAIL, TOO_MANY)]
    # The message goes to the one accepted recipient, and its record says so.
    assert finish(ctx).rcpt_to == ("ann@example.net",)


def test_each_new_transaction_starts_counting_again(on, store):
    ctx = connect(on, store)
    # A transaction delivered, then the client's next MAIL FROM on the same connection.
    ctx._envfrom("<bounce@shop.example>")
    rcpt_replies(ctx, ["ann@example.net", "bob@example.net"])
    finish(ctx)
    ctx._envfrom("<bounce@shop.example>")
    assert [v for v, _ in rcpt_replies(ctx, ["bob@example.net", "cy@example.org"])] == \
        [Milter.CONTINUE, Milter.TEMPFAIL]
    # RSET (libmilter calls abort), then MAIL FROM again.
    ctx._priv.abort()
    ctx._envfrom("<bounce@shop.example>")
    answers = rcpt_replies(ctx, ["cy@example.org", "dee@example.org"])
    assert answers == [(Milter.CONTINUE, None), (Milter.TEMPFAIL, TOO_MANY)]
    assert finish(ctx).rcpt_to == ("cy@example.org",)


def test_abort_alone_resets_the_count(on, store):
    ctx = connect(on, store)
    ctx._envfrom("<bounce@shop.example>")
    rcpt_replies(ctx, ["ann@example.net"])
    ctx._priv.abort()  # RSET; a non-compliant MTA might skip MAIL's callback after it
    assert rcpt_replies(ctx, ["bob@example.net"]) == [(Milter.CONTINUE, None)]


def test_mode_off_accepts_every_rcpt_and_negotiates_as_before(on, store):
    off = replace(on, split_recipients=False)
    ctx = connect(off, store)
    # The MTA neither sends connect nor waits for the milter's reply to RCPT.
    assert ctx._protocol & Milter.P_NOCONNECT and ctx._protocol & Milter.P_NR_RCPT
    ctx._envfrom("<bounce@shop.example>")
    answers = rcpt_replies(ctx, ["ann@example.net", "bob@example.net", "cy@example.org"])
    assert answers == [(Milter.CONTINUE, None)] * 3
    assert finish(ctx).rcpt_to == ("ann@example.net", "bob@example.net", "cy@example.org")


def test_mode_on_negotiates_connect_and_a_reply_to_every_rcpt(on, store):
    ctx = connect(on, store)
    assert not ctx._protocol & Milter.P_NOCONNECT
    assert not ctx._protocol & Milter.P_NR_RCPT
    # The other no-reply steps stay negotiated: headers and body cost no round trip.
    assert ctx._protocol & Milter.P_NR_HDR and ctx._protocol & Milter.P_NR_BODY


@pytest.mark.parametrize("hostaddr", [("127.0.0.1", 0), ("::1", 0, 0, 0), "/run/x.sock", None])
def test_made_up_connects_are_never_split(on, store, hostaddr):
    """Postfix's non_smtpd_milters (sendmail(1) via pickup) connect from port 0; cleanup
    cannot refuse one recipient and would defer the whole message forever."""
    ctx = connect(on, store, hostaddr)
    ctx._envfrom("<bounce@shop.example>")
    assert [v for v, _ in rcpt_replies(ctx, ["ann@example.net", "bob@example.net"])] == \
        [Milter.CONTINUE, Milter.CONTINUE]


def test_ipv6_clients_are_split(on, store):
    ctx = connect(on, store, ("2001:db8::7", 40123, 0, 0))
    ctx._envfrom("<bounce@shop.example>")
    assert [v for v, _ in rcpt_replies(ctx, ["ann@example.net", "bob@example.net"])] == \
        [Milter.CONTINUE, Milter.TEMPFAIL]


def test_reply_is_a_named_value_pymilter_accepts():
    assert str(replies.TOO_MANY_RECIPIENTS) == "452 4.5.3 Too many recipients"
    assert replies.TOO_MANY_RECIPIENTS.milter_text() == "Too many recipients"


def test_setting_is_off_by_default_and_read_from_file_and_environment(tmp_path):
    assert Settings().split_recipients is False
    conf = tmp_path / "e.conf"
    conf.write_text("[milter]\nsplit_recipients = yes\n")
    assert engage_settings.load(str(conf), environ={}).split_recipients is True
    assert engage_settings.load(str(conf), environ={"ENGAGE_SPLIT_RECIPIENTS": "no"}
                                ).split_recipients is False
    conf.write_text("[milter]\nsplit_recipients = sometimes\n")
    with pytest.raises(engage_settings.SettingsError, match=r"\[milter\] split_recipients"):
        engage_settings.load(str(conf), environ={})
