"""End to end with ``link_style = v1``: the milter (under the sandbox Postfix) writes
/v1/track/click/<tracking_id> and /v1/track/open/<email_id> under a tracking URL with a
path; gunicorn answers them and the short forms of the same tokens; the message status
API then reports the first open and click with campaign, metadata, tags and recipient."""
from __future__ import annotations

import email
import json
import re
from email import policy
from email.message import EmailMessage

from support.procs import http_get
from support.stored import settled_for

RCPT = "Reader@Example.NET"
URLS = ["https://shop.example.com/sale?a=1&b=2", "https://example.com/guide#part-2"]
METADATA = {"user_id": "u-9"}


def build_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.example.com>"
    msg["To"] = RCPT
    msg["Subject"] = "v1 links"
    msg["Message-ID"] = "<e2e-v1-1@shop.example.com>"
    msg["X-MSYS-API"] = json.dumps({"campaign_id": "v1-e2e", "metadata": METADATA,
                                    "tags": ["v1"]})
    msg.set_content("Hello\n")
    anchors = "".join(f'<p><a href="{url.replace("&", "&amp;")}">l{i}</a></p>'
                      for i, url in enumerate(URLS))
    msg.add_alternative(f"<html><body>{anchors}</body></html>\n", subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def test_v1_link_style_end_to_end(start_redirector, start_milter, postfix_sandbox):
    # Routes follow the tracking URL's path only, so any host will do for the redirector.
    redirector = start_redirector({"ENGAGE_TRACKING_URL": "http://track.invalid/track"})
    base = redirector.public_url + "/track"
    milter = start_milter({"ENGAGE_TRACKING_URL": base, "ENGAGE_LINK_STYLE": "v1",
                           "ENGAGE_TRACK_TEXT_LINKS": "no"})
    postfix = postfix_sandbox(milter)
    assert postfix.send(build_message(), "bounces@shop.example.com", [RCPT]) == {}
    [delivered] = postfix.wait_delivered(1)
    message = email.message_from_bytes(delivered, policy=policy.default)
    html_part = message.get_body(("html",)).get_content()

    clicks = re.findall(rf"{re.escape(base)}/v1/track/click/([A-Za-z0-9_-]+)", html_part)
    opens = re.findall(rf"{re.escape(base)}/v1/track/open/([A-Za-z0-9_-]+)", html_part)
    assert len(clicks) == len(URLS) and len(opens) == 1
    assert f"{base}/c/" not in html_part and f"{base}/o/" not in html_part
    email_id = opens[0]
    assert "e2e-v1-1" not in email_id and all(c.startswith(email_id) for c in clicks)

    for tracking_id, url in zip(clicks, URLS):
        for path in (f"/v1/track/click/{tracking_id}", f"/c/{tracking_id}"):
            status, headers, _ = http_get(base + path, {"Referer": "https://webmail.example/"})
            assert (status, headers["Location"]) == (302, url)
    status, headers, body = http_get(f"{base}/v1/track/open/{email_id}")
    assert status == 200 and headers["Content-Type"] == "image/gif" and len(body) == 43

    settled_for(redirector)  # the clicks' events are appended after their 302s
    status, _, body = http_get(f"{base}/api/v1/messages/{email_id}",
                               {"Authorization": redirector.api_key})
    assert status == 200, body
    result = json.loads(body)["results"]
    assert result["email_id"] == email_id and result["opened_at"] and result["clicked_at"]
    assert result["open_count"] == 1 and result["click_count"] == 2 * len(URLS)
    assert result["campaign_id"] == "v1-e2e" and result["metadata"] == METADATA
    assert result["tags"] == ["v1"] and result["recipient"] == RCPT
