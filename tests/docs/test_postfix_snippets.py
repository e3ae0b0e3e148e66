"""Every Postfix snippet of docs/, README.md and etc/, pasted into a fresh Postfix that
has only engage: mail passes, and comes out tracked.

Each snippet is applied as an operator would, with ``postconf -c <dir> -e 'name = value'``
(the value exactly as written), to a private sandbox Postfix whose smtpd_milters is a
running engage-milter; only engage's socket (``inet:127.0.0.1:8890`` in the snippets) is
replaced by the test milter's. A tracked message sent by SMTP must get 250 and arrive
with its link rewritten; when the snippet sets non_smtpd_milters, a message submitted
with sendmail(1) too. Needs root (Postfix's master).
"""
from __future__ import annotations

import re
import smtplib

import pytest

from support.snippets import ENGAGE_POSTFIX_SOCKET, postfix_settings, snippets

POSTFIX = snippets("postfix main.cf")
MESSAGE = (
    b"From: News <news@example.com>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: snippet test\r\n"
    b'X-MSYS-API: {"campaign_id": "snippets"}\r\n'
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b'<html><body><p><a href="https://example.com/offer?id=7">Offer</a></p></body></html>\r\n')
TRACKED = re.compile(rb'href="http://track\.test/c/[A-Za-z0-9_-]+"')


def apply(postfix, text: str, milter_socket: str) -> list[str]:
    """postconf -e every setting of the snippet (engage's socket swapped), then reload."""
    settings = {name: value.replace(ENGAGE_POSTFIX_SOCKET, milter_socket)
                for _, name, value in postfix_settings(text)}
    assert settings, "the snippet sets nothing"
    postfix.postconf(**settings)
    return list(settings)


def assert_tracked(postfix) -> None:
    [delivered] = postfix.wait_delivered(1)
    assert b"X-MSYS-API" not in delivered
    assert TRACKED.search(delivered), delivered[-400:]
    assert b"https://example.com/offer" not in delivered


@pytest.mark.parametrize("snippet", POSTFIX, ids=[s.where for s in POSTFIX])
def test_snippet_passes_tracked_mail(snippet, start_milter, postfix_sandbox):
    milter = start_milter()
    postfix = postfix_sandbox(milter, private=True)
    names = apply(postfix, snippet.text, milter.postfix_socket)
    try:
        assert postfix.send(MESSAGE, "news@example.com", ["reader@example.org"]) == {}
    except smtplib.SMTPResponseException as refused:
        pytest.fail(f"{snippet.where}: Postfix answered {refused.smtp_code} "
                    f"{refused.smtp_error!r} with this snippet\n{postfix.log_text()[-2000:]}")
    assert_tracked(postfix)
    if "non_smtpd_milters" in names:
        postfix.reset()
        postfix.sendmail(MESSAGE, "news@example.com", ["reader@example.org"])
        assert_tracked(postfix)


@pytest.mark.parametrize("value", [
    f"{ENGAGE_POSTFIX_SOCKET}   # engage first",  # the old block under "The milter"
    f"{ENGAGE_POSTFIX_SOCKET}, unix:/run/opendkim/opendkim.sock",  # the old "Configure Postfix"
], ids=["inline-comment", "opendkim-without-opendkim"])
def test_the_old_snippets_stop_all_mail(value, start_milter, postfix_sandbox):
    """The test above can fail: the README's two old blocks refuse every message."""
    milter = start_milter()
    postfix = postfix_sandbox(milter, private=True)
    apply(postfix, f"smtpd_milters = {value}\n", milter.postfix_socket)
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        postfix.send(MESSAGE, "news@example.com", ["reader@example.org"])
    assert refused.value.smtp_code == 451
