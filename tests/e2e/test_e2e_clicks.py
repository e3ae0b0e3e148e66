"""End to end, recipient side: a message through the sandbox Postfix and the milter, then
every tracked link in the delivered copy clicked over HTTP (gunicorn directly, and through
nginx when it is installed): each 302 lands on the URL the sender wrote, both pixels
answer the GIF, and the events API returns the clicks and opens with the X-MSYS-API
campaign_id, metadata and tags."""
from __future__ import annotations

import email
import html
import json
import re
from email import policy
from email.message import EmailMessage
from urllib.parse import urlencode

import pytest

from support import stored
from support.procs import http_get

CAMPAIGN = "e2e-clicks"
METADATA = {"user_id": "u-77", "plan": "gold", "score": 4.5}
TAGS = ["newsletter", "spring"]
RCPT = "Reader@Example.NET"
CLIENT = "127.0.0.2"  # the test's own address: nginx sees it, gunicorn behind nginx does not
FORGED = "198.51.100.23"  # what the client claims in X-Forwarded-For: never believed
USER_AGENT = "engage-e2e/1.0"

# (href as written in the HTML, link name). Tracked links; the redirect must go to
# html.unescape(href).
HTML_LINKS = [
    ("https://shop.example.com/sale?utm_source=mail&amp;utm_campaign=spring&amp;x=1", ""),
    ("https://example.com/guide#section-2", ""),
    ("https://example.com/a%20b/%E2%82%AC?q=caf%C3%A9&amp;r=%26", ""),
    ("https://xn--bcher-kva.example/buch?id=7", ""),
    ("HTTPS://Example.COM:8443/Mixed/Case?Q=1", ""),
    ("https://example.com/cta?from=button", "cta-button"),
]
TEXT_URL = "https://example.org/plain?a=1&b=2"
NOT_TRACKED = ["mailto:help@example.com", "https://example.com/opt-out-of-tracking"]


def build_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Shop News <news@shop.example.com>"
    msg["To"] = RCPT
    msg["Subject"] = "Spring links"
    msg["Message-ID"] = "<e2e-clicks-1@shop.example.com>"
    msg["X-MSYS-API"] = json.dumps({"campaign_id": CAMPAIGN, "metadata": METADATA, "tags": TAGS})
    msg.set_content(f"Hello,\n\nread it on the web: {TEXT_URL}.\n\nBye\n")
    anchors = "\n".join(
        f'<p><a href="{href}"{f" data-msys-linkname={chr(34)}{name}{chr(34)}" if name else ""}>'
        f"link {i}</a></p>" for i, (href, name) in enumerate(HTML_LINKS))
    body = (f"<html><head><title>x</title></head><body>\n<h1>Spring</h1>\n{anchors}\n"
            f'<p><a href="{NOT_TRACKED[0]}">mail us</a> '
            f'<a data-msys-clicktrack="0" href="{NOT_TRACKED[1]}">opt out</a></p>\n'
            "</body></html>\n")
    msg.add_alternative(body, subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=policy.SMTP)


def delivered_parts(raw: bytes) -> dict[str, str]:
    """The decoded text of each body part of the delivered message, by subtype."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert "X-MSYS-API" not in message
    return {part.get_content_subtype(): part.get_content()
            for part in message.walk() if part.get_content_maintype() == "text"}


def tracked(text: str, base: str, kind: str) -> list[str]:
    return re.findall(rf"{re.escape(base)}/{kind}/[A-Za-z0-9_-]+", text)


def get(url: str) -> tuple[int, object, bytes]:
    """A recipient's GET, from CLIENT, with a forged X-Forwarded-For."""
    headers = {"User-Agent": USER_AGENT, "Accept-Language": "de-DE,de;q=0.9",
               "X-Forwarded-For": FORGED}
    return http_get(url, headers, source=CLIENT)


@pytest.mark.parametrize("front", ["gunicorn", "nginx"])
def test_every_tracked_link_lands_on_its_url_and_the_events_api_reports_it(
        front, start_redirector, start_milter, postfix_sandbox, redis_client):
    redirector = start_redirector(nginx=front == "nginx")
    base = redirector.public_url
    milter = start_milter({"ENGAGE_TRACKING_URL": base})
    postfix = postfix_sandbox(milter)

    assert postfix.send(build_message(), "bounces@shop.example.com", [RCPT]) == {}
    [delivered] = postfix.wait_delivered(1)
    parts = delivered_parts(delivered)
    html_part, text_part = parts["html"], parts["plain"]

    # The delivered copy: every link tracked in document order, the others untouched.
    html_clicks = tracked(html_part, base, "c")
    text_clicks = tracked(text_part, base, "c")
    assert len(html_clicks) == len(HTML_LINKS) and len(text_clicks) == 1
    for url in NOT_TRACKED:
        assert f'href="{url}"' in html_part
    for href, _ in HTML_LINKS:
        assert href not in html_part
    expected = [html.unescape(href) for href, _ in HTML_LINKS] + [TEXT_URL]

    # Click each one, redirects not followed: 302 to exactly what the sender wrote.
    for url, want in zip(html_clicks + text_clicks, expected):
        status, headers, _ = get(url)
        assert (status, headers["Location"]) == (302, want), url
        assert headers["Cache-Control"] == "no-store"

    # Both pixels: the 43-byte GIF.
    [top] = tracked(html_part, base, "i")
    [bottom] = tracked(html_part, base, "o")
    for url in (top, bottom):
        status, headers, body = get(url)
        assert status == 200 and headers["Content-Type"] == "image/gif"
        assert len(body) == 43 and body.startswith(b"GIF89a")

    # The events API, through the same front door, with the sandbox's API key (once the
    # clicks' events, appended after their 302s, are in).
    stored.settled_for(redirector)
    query = urlencode({"campaigns": CAMPAIGN, "recipients": RCPT.lower()})
    status, _, body = http_get(f"{base}/api/v1/events/message?{query}",
                               {"Authorization": redirector.api_key})
    assert status == 200, body
    answer = json.loads(body)
    events = answer["results"]
    assert answer["total_count"] == len(expected) + 2 == len(events)
    clicks = [e for e in events if e["type"] == "click"]
    assert sorted(e["type"] for e in events if e["type"] != "click") == ["initial_open", "open"]
    assert sorted(e["target_link_url"] for e in clicks) == sorted(expected)
    names = {e["target_link_url"]: e["target_link_name"] for e in clicks}
    assert names == {html.unescape(href): name for href, name in HTML_LINKS} | {TEXT_URL: ""}
    for event in events:
        assert event["campaign_id"] == CAMPAIGN
        assert event["rcpt_meta"] == METADATA
        assert event["rcpt_tags"] == TAGS
        assert event["rcpt_to"] == RCPT.lower() and event["raw_rcpt_to"] == RCPT
        assert event["message_id"] == "<e2e-clicks-1@shop.example.com>"
        assert event["subject"] == "Spring links"
        assert event["user_agent"] == USER_AGENT
        # The address the front server saw (we connect from 127.0.0.2), never the forged
        # X-Forwarded-For. Behind nginx gunicorn's peer is nginx (127.0.0.1): with
        # ENGAGE_PROXY_HOPS=1 the redirector takes the address nginx appended.
        assert event["ip_address"] == CLIENT
    assert all(e["accept_language"] == "de-DE,de;q=0.9" for e in clicks)
    # Newest first, and the ids are the stream's.
    assert [int(e["event_id"]) for e in events] == sorted(
        (int(e["event_id"]) for e in events), reverse=True)
    assert stored.count(redis_client, "test:") == len(events)

    if redirector.nginx is not None:
        # nginx logged the requests it proxied, from our address.
        assert redirector.nginx.access_log_text().count(f"{CLIENT} - ") >= len(events)


def test_a_message_to_two_recipients_gives_events_with_rcpt_to_list(
        start_redirector, start_milter, postfix_sandbox):
    """One transaction, two RCPT TO: one body, one set of links, so the click cannot say
    who clicked: no rcpt_to, the lowercased list in rcpt_to_list; either address finds it."""
    redirector = start_redirector()
    postfix = postfix_sandbox(start_milter({"ENGAGE_TRACKING_URL": redirector.public_url}))
    message = (b'From: a@example.com\r\nSubject: two\r\nX-MSYS-API: {"campaign_id": "pair"}\r\n'
               b"Content-Type: text/plain\r\n\r\nhttps://example.com/both\r\n")
    postfix.send(message, "s@example.com", ["One@Example.net", "two@example.org"])
    first, second = postfix.wait_delivered(2)
    [url] = tracked(first.decode(), redirector.public_url, "c")
    assert tracked(second.decode(), redirector.public_url, "c") == [url]
    status, headers, _ = http_get(url)
    assert (status, headers["Location"]) == (302, "https://example.com/both")
    stored.settled_for(redirector)
    for rcpt in ("one@example.net", "TWO@example.org"):
        status, _, body = http_get(
            f"{redirector.public_url}/api/v1/events/message?recipients={rcpt}",
            {"Authorization": redirector.api_key})
        [event] = json.loads(body)["results"]
        assert event["rcpt_to_list"] == ["one@example.net", "two@example.org"]
        assert not {"rcpt_to", "raw_rcpt_to", "recipient_domain"} & event.keys()
        assert event["campaign_id"] == "pair"
