"""The 452 split end to end, with two real Postfix instances.

An application submits one message with X-MSYS-API to several recipients to a *client*
Postfix (a private sandbox instance with no milter) that relays everything to the
*engage* Postfix (another sandbox instance, engage-milter in smtpd_milters with
split_recipients on, delivering into its Maildir). Postfix's SMTP client treats the 452
to a RCPT TO like any soft recipient error: with one relay host that is the final server,
so the refused recipients are deferred to a later queue run (the sandbox's timers are
1 s; the test also flushes). Each transaction that reaches engage carries one recipient:
its copy gets tracked links of its own, and a click on them yields an event with that
copy's single rcpt_to. Nothing is lost or duplicated: one copy per recipient, the client's
queue ends empty, no bounce.
"""
from __future__ import annotations

import email
import json
import re
import time
from email import policy
from email.message import EmailMessage
from urllib.parse import urlencode

import pytest

from engage.store.links import split_token
from support.procs import PostfixSandbox, http_get
from support.stored import settled_for

SENDER = "bounces@shop.example.com"
TOKEN = r"/(c|i|o)/([A-Za-z0-9_-]+)"
# A 452 reply in a Postfix log line (not "452" inside a queue id such as B945222A0C6).
REPLY_452 = re.compile(r"\b452 4\.5\.3\b")


def recipients(count: int) -> list[str]:
    return [f"Reader{i}@Example.NET" for i in range(count)]


def build_message(campaign: str, rcpts: list[str]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.example.com>"
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = "Split"
    msg["Message-ID"] = f"<{campaign}@shop.example.com>"
    msg["X-MSYS-API"] = json.dumps({"campaign_id": campaign, "metadata": {"batch": 7}})
    msg.set_content("Hello, see https://shop.example.com/text\n")
    msg.add_alternative('<html><body><p><a href="https://shop.example.com/sale?a=1">Sale</a>'
                        '</p></body></html>\n', subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def wait_all_delivered(client: PostfixSandbox, server: PostfixSandbox, count: int,
                       timeout: float = 60) -> list[bytes]:
    """Flush the client until the engage Postfix delivered COUNT files and the client's
    queue is empty; then one more look that nothing else arrives (a duplicate, a bounce)."""
    deadline = time.monotonic() + timeout
    while not (len(server.delivered_paths()) >= count and client.queue_empty()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(server.delivered_paths())} of {count} delivered within {timeout}s\n"
                f"--- client queue:\n{client.queue()}\n--- client log:\n"
                f"{client.log_text()[-3000:]}\n--- engage log:\n{server.log_text()[-3000:]}")
        client.flush()
        time.sleep(0.2)
    time.sleep(0.5)
    assert client.queue_empty() and server.queue_empty()
    return [path.read_bytes() for path in server.delivered_paths()]


def by_recipient(delivered: list[bytes]) -> dict[str, bytes]:
    """Each delivered file by its X-Original-To; fails on a duplicate or a stranger."""
    copies: dict[str, bytes] = {}
    for raw in delivered:
        message = email.message_from_bytes(raw, policy=policy.default)
        rcpt = message["X-Original-To"]
        assert rcpt not in copies, f"two copies for {rcpt}"
        assert message["Subject"] == "Split", "a bounce or another message arrived"
        copies[rcpt] = raw
    return copies


def tokens(raw: bytes, base: str) -> dict[str, set[str]]:
    """The tracking tokens of a delivered copy by kind (c, i, o), from its decoded parts."""
    message = email.message_from_bytes(raw, policy=policy.default)
    found: dict[str, set[str]] = {"c": set(), "i": set(), "o": set()}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            for kind, token in re.findall(re.escape(base) + TOKEN, part.get_content()):
                found[kind].add(token)
    return found


def message_keys(found: dict[str, set[str]]) -> set[str]:
    return {split_token(token)[0] for kind in found.values() for token in kind}


def click_events(redirector, campaign: str) -> list[dict]:
    settled_for(redirector)  # clicks' events are appended after their 302
    query = urlencode({"campaigns": campaign, "events": "click"})
    status, _, body = http_get(f"{redirector.public_url}/api/v1/events/message?{query}",
                               {"Authorization": redirector.api_key})
    assert status == 200, body
    return json.loads(body)["results"]


@pytest.fixture
def engage_stack(start_redirector, start_milter, postfix_sandbox, redis_client):
    """make(split, *, clicks=False, tune_engage=False) -> (tracking base URL or the
    redirector, milter, engage Postfix, client Postfix). clicks starts a redirector (the
    first item is then the Redirector); tune_engage gives engage its own Postfix instance
    so the test may change its main.cf (else the session's shared one is used)."""
    def make(split: str, *, clicks: bool = False, tune_engage: bool = False):
        redirector = start_redirector() if clicks else None
        base = redirector.public_url if redirector else "http://track.test"
        milter = start_milter({"ENGAGE_TRACKING_URL": base, "ENGAGE_SPLIT_RECIPIENTS": split,
                               "ENGAGE_MILTER_WORKERS": "0"})
        server = postfix_sandbox(milter, private=tune_engage)
        client = postfix_sandbox(None, relay_port=server.smtp_port)
        return redirector or base, milter, server, client
    return make


def test_every_recipient_gets_its_own_copy_links_and_click_events(engage_stack):
    redirector, milter, server, client = engage_stack("yes", clicks=True)
    rcpts = recipients(4)
    assert client.send(build_message("split-on", rcpts), SENDER, rcpts) == {}

    copies = by_recipient(wait_all_delivered(client, server, len(rcpts)))
    assert sorted(copies) == sorted(rcpts)

    # The client got 452 for every recipient but one per transaction and sent them again
    # later; engage's Postfix saw one transaction per recipient.
    client_log, server_log = client.log_text(), server.log_text()
    assert "452 4.5.3 Too many recipients (in reply to RCPT TO command)" in client_log
    assert client_log.count("status=sent") == len(rcpts)
    assert "status=bounced" not in client_log and "non-delivery notification" not in client_log
    assert server_log.count("milter-reject: RCPT from") == 3 + 2 + 1
    assert server_log.count("status=sent (delivered to maildir)") == len(rcpts)

    # Every copy has links and pixels of its own: one message key per copy, all different.
    base = redirector.public_url
    found = {rcpt: tokens(raw, base) for rcpt, raw in copies.items()}
    keys = {rcpt: message_keys(kinds) for rcpt, kinds in found.items()}
    assert all(len(k) == 1 and all(kinds.values()) for k, kinds in zip(keys.values(),
                                                                      found.values()))
    assert len(set().union(*keys.values())) == len(rcpts)

    # A click on each copy: its event names that copy's one recipient.
    for rcpt in rcpts:
        for token in sorted(found[rcpt]["c"]):
            status, headers, _ = http_get(f"{base}/c/{token}")
            assert status == 302 and headers["Location"].startswith("https://shop.example.com/")
    events = click_events(redirector, "split-on")
    assert len(events) == 2 * len(rcpts)  # one html and one text link per copy
    for event in events:
        assert "rcpt_to_list" not in event
        assert event["rcpt_meta"] == {"batch": 7}
    assert sorted(e["raw_rcpt_to"] for e in events) == sorted(rcpts * 2)
    assert {e["rcpt_to"] for e in events} == {r.lower() for r in rcpts}
    assert re.search(r"RCPT answered 452", milter.log_text())


def test_mode_off_keeps_one_transaction_and_one_set_of_links(engage_stack):
    redirector, _, server, client = engage_stack("no", clicks=True)
    rcpts = recipients(3)
    assert client.send(build_message("split-off", rcpts), SENDER, rcpts) == {}

    copies = by_recipient(wait_all_delivered(client, server, len(rcpts)))
    assert sorted(copies) == sorted(rcpts)
    assert not REPLY_452.search(client.log_text()) and "milter-reject" not in server.log_text()
    base = redirector.public_url
    keys = {frozenset(message_keys(tokens(raw, base))) for raw in copies.values()}
    assert len(keys) == 1 and len(next(iter(keys))) == 1  # the same links in every copy

    token = sorted(tokens(next(iter(copies.values())), base)["c"])[0]
    assert http_get(f"{base}/c/{token}")[0] == 302
    [event] = click_events(redirector, "split-off")
    assert "rcpt_to" not in event
    assert sorted(event["rcpt_to_list"]) == sorted(r.lower() for r in rcpts)


def test_a_client_sending_one_recipient_per_transaction_never_sees_the_452(engage_stack):
    """The README's advice for a prompt relay: smtp_destination_recipient_limit = 1."""
    base, _, server, client = engage_stack("yes")
    client.postconf(smtp_destination_recipient_limit="1")
    rcpts = recipients(12)
    assert client.send(build_message("split-prompt", rcpts), SENDER, rcpts) == {}

    copies = by_recipient(wait_all_delivered(client, server, len(rcpts)))
    assert sorted(copies) == sorted(rcpts)
    assert not REPLY_452.search(client.log_text()) and "status=deferred" not in client.log_text()
    assert len(set().union(*(message_keys(tokens(raw, base)) for raw in copies.values()))) \
        == len(rcpts)


def test_more_recipients_than_the_error_limits_with_the_readme_settings(engage_stack):
    """Postfix's smtpd counts every milter 452 as a client error: by default the 11th
    reply is delayed 1 s each and after 20 the session ends with 421, so a client that
    sends more than 20 recipients in one transaction would never get anything through.
    With the limits raised as README says, 22 recipients all arrive."""
    _, _, server, client = engage_stack("yes", tune_engage=True)
    server.postconf(smtpd_soft_error_limit="1001", smtpd_hard_error_limit="1001")
    rcpts = recipients(22)
    assert client.send(build_message("split-many", rcpts), SENDER, rcpts) == {}

    copies = by_recipient(wait_all_delivered(client, server, len(rcpts), timeout=90))
    assert sorted(copies) == sorted(rcpts)
    assert "too many errors" not in server.log_text()


def test_local_submission_through_non_smtpd_milters_is_not_split(engage_stack):
    """sendmail(1) -> pickup -> cleanup: a milter there cannot refuse one recipient
    (Postfix would defer the whole message forever), so it is never split."""
    base, _, server, _ = engage_stack("yes", tune_engage=True)
    server.postconf(non_smtpd_milters="$smtpd_milters")
    rcpts = recipients(3)
    server.sendmail(build_message("split-local", rcpts), SENDER, rcpts)

    copies = by_recipient(server.wait_delivered(len(rcpts)))
    assert sorted(copies) == sorted(rcpts)
    assert "can't reject recipient" not in server.log_text()
    keys = {frozenset(message_keys(tokens(raw, base))) for raw in copies.values()}
    assert len(keys) == 1  # tracked, as one transaction
