"""End to end, counting: messages through the sandbox Postfix and the real milter are
counted sent (one per transaction: a transaction with three recipients carries one set of
links), untracked ones are not; opens and clicks on the delivered copies through gunicorn
show up in the metrics API next to them."""
from __future__ import annotations

import email
import json
import re
import time
from email import policy
from urllib.parse import urlencode

from support import stored
from support.procs import http_get

FROM = "news@shop.example.com"


def message(campaign: str, n: int, tracking: bool = True) -> bytes:
    options = {} if tracking else {"options": {"open_tracking": False, "click_tracking": False}}
    header = json.dumps({"campaign_id": campaign, **options})
    return (f"From: Shop <{FROM}>\r\nTo: r@example.net\r\nSubject: n{n}\r\n"
            f"Message-ID: <m{n}@shop.example.com>\r\nX-MSYS-API: {header}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f'<html><body><p><a href="https://shop.example.com/p/{n}" '
            'data-msys-linkname="product">look</a></p></body></html>\r\n').encode()


def tracked(raw: bytes, base: str, kind: str) -> list[str]:
    body = email.message_from_bytes(raw, policy=policy.default).get_body(("html",))
    return re.findall(rf"{re.escape(base)}/{kind}/[A-Za-z0-9_-]+", body.get_content())


def test_sent_counts_equal_messages_sent(start_milter, start_redirector, postfix_sandbox,
                                         redis_client):
    redirector = start_redirector()
    milter = start_milter({"ENGAGE_TRACKING_URL": redirector.public_url})
    postfix = postfix_sandbox(milter)
    started = time.time()
    for n in range(5):
        postfix.send(message("e2e-metrics", n), FROM, [f"r{n}@example.net"])
    postfix.send(message("e2e-metrics", 5), FROM, ["a@example.net", "b@example.net",
                                                   "c@example.net"])
    postfix.send(message("other", 6), FROM, ["r6@example.net"])
    postfix.send(message("e2e-metrics", 7, tracking=False), FROM, ["r7@example.net"])
    delivered = postfix.wait_delivered(10, timeout=60)
    assert stored.records(redis_client, "test:") == 7  # the messages the milter registered

    for raw in delivered[:4]:  # three recipients of one message may be among them
        for url in tracked(raw, redirector.public_url, "o") + tracked(raw, redirector.public_url, "c"):
            assert http_get(url, {"User-Agent": "e2e"})[0] in (200, 302)
    stored.settled_for(redirector)  # the clicks' events are appended after their 302s
    params = urlencode({"from": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 60)),
                        "metrics": "count_sent,count_rendered,count_clicked"})
    status, _, body = http_get(f"{redirector.url}/api/v1/metrics/deliverability/campaign?"
                               f"{params}", {"Authorization": redirector.api_key})
    assert status == 200
    rows = {row.pop("campaign_id"): row for row in json.loads(body)["results"]}
    events = stored.events(redis_client, "test:")
    assert len(events) >= 8
    for campaign, sent in (("e2e-metrics", 6), ("other", 1)):
        mine = [event for event in events if event["campaign_id"] == campaign]
        expected = {"count_sent": sent,
                    "count_rendered": sum(e["type"] != "click" for e in mine),
                    "count_clicked": sum(e["type"] == "click" for e in mine)}
        assert rows.get(campaign, {"count_sent": 0, "count_rendered": 0, "count_clicked": 0}
                        ) == expected
