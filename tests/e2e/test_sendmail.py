"""engage-milter under a real Sendmail: Debian's sendmail 8.17 calls it through
INPUT_MAIL_FILTER, exactly as etc/sendmail/engage-milter.mc and every ```sendmail mc
snippet of the docs say: their lines are put into the sandbox's sendmail.mc as written,
only engage's socket (inet:8890@127.0.0.1) swapped for the test milter's.

Sendmail (unpacked from Debian's .debs, see tests/support/sendmail.py) listens on a
loopback port with the milter under test and relays to a sandbox Postfix (no milter
there) that delivers into its Maildir. Needs root (sendmail, Postfix, unshare).
"""
from __future__ import annotations

import os
import re
import smtplib

import pytest

from support import stored
from support.procs import crlf_to_lf, split_message
from support.sendmail import SandboxSendmail, can_unshare_uts, unpack_sendmail
from support.snippets import ENGAGE_SENDMAIL_SOCKET, Snippet, sendmail_filter_lines, snippets

SNIPPETS = snippets("sendmail mc")
ETC_SNIPPET = next(s for s in SNIPPETS if s.where == "etc/sendmail/engage-milter.mc")

NEWSLETTER = (
    "From: News <news@example.com>\r\n"
    "To: reader@example.org\r\n"
    "Subject: through sendmail\r\n"
    'X-MSYS-API: {"campaign_id": "sendmail-campaign", "tags": ["sm"]}\r\n'
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    '<html><body><p><a href="https://example.com/offer?id=7">Offer</a> and '
    '<a href="mailto:help@example.com">help</a></p></body></html>\r\n')


@pytest.fixture(scope="module")
def sendmail_tree(tmp_path_factory):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the Sendmail test needs root (CI is set, so this is an error)")
        pytest.skip("needs root: sendmail and Postfix run as root")
    if not can_unshare_uts():
        pytest.fail("unshare --uts does not work here: sendmail would sleep 60 s at start-up "
                    "on an unqualified host name")
    return unpack_sendmail(tmp_path_factory.mktemp("sendmail-root"))


def filters(snippet: Snippet, socket: str) -> str:
    """The snippet's m4 lines with engage's socket swapped for the test milter's."""
    text = "\n".join(sendmail_filter_lines(snippet.text))
    assert ENGAGE_SENDMAIL_SOCKET in text, f"{snippet.where} does not add engage's socket"
    return text.replace(ENGAGE_SENDMAIL_SOCKET, socket)


@pytest.fixture
def sendmail_with(sendmail_tree, engage_tmp, start_milter, postfix_sandbox, redis_client):
    """make(snippet) -> (SandboxSendmail with the snippet's milter lines, the milter,
    the relay Postfix)."""
    servers: list[SandboxSendmail] = []

    def make(snippet: Snippet):
        relay = postfix_sandbox(None)
        milter = start_milter()
        workdir = engage_tmp / f"sendmail-{milter.port}"
        workdir.mkdir()
        server = SandboxSendmail(workdir, sendmail_tree, milter.socket, relay.smtp_port,
                                 filters(snippet, milter.socket))
        servers.append(server.start())
        return server, milter, relay

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sendmail(sendmail_with):
    """(SandboxSendmail as etc/sendmail/engage-milter.mc says, the milter, the relay)."""
    return sendmail_with(ETC_SNIPPET)


def send(server: SandboxSendmail, message: str) -> dict:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as smtp:
        return smtp.sendmail("news@example.com", ["reader@example.org"], message.encode())


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.where for s in SNIPPETS])
def test_sendmail_delivers_the_message_rewritten_by_the_milter(snippet, sendmail_with, redis_client):
    server, milter, relay = sendmail_with(snippet)
    assert send(server, NEWSLETTER) == {}
    (raw,) = relay.wait_delivered(1)
    head, body = split_message(crlf_to_lf(raw))
    assert b"X-MSYS-API" not in head
    assert b"by " + b"sendmail-sandbox.engage.test (8." in head  # it went through Sendmail
    clicks = re.findall(rb'href="(http://track\.test/c/[A-Za-z0-9_-]+)"', body)
    assert len(clicks) == 1 and b"https://example.com/offer" not in body
    assert b'href="mailto:help@example.com"' in body
    assert body.count(b"http://track.test/o/") == 1 and body.count(b"http://track.test/i/") == 1
    # The milter logged Sendmail's queue id (macro i) and the campaign.
    line = [x for x in milter.log_text().splitlines() if "campaign='sendmail-campaign'" in x]
    assert line and re.search(r"engage_milter: [0-9A-Za-z]{14} accept: links=1 ", line[0]), line
    assert stored.records(redis_client, "test:"), "the message record was not stored"


def test_sendmail_returns_the_milters_550_for_a_bad_header(sendmail):
    server, _, relay = sendmail
    bad = NEWSLETTER.replace('"tags": ["sm"]', '"metadata": [1]')
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(server, bad)
    assert info.value.smtp_code == 550
    assert b"5.6.0 X-MSYS-API 'metadata' must be of type 'json object'" in info.value.smtp_error
    assert relay.delivered_paths() == []


def test_sendmail_tempfails_while_the_milter_is_down(sendmail):
    server, milter, relay = sendmail
    milter.kill()
    with pytest.raises(smtplib.SMTPResponseException) as info:
        send(server, NEWSLETTER)
    assert 400 <= info.value.smtp_code < 500, info.value  # F=T: tempfail, never delivered
    assert relay.delivered_paths() == []
