"""The hidden trap link end to end: the milter (in-process, Milter.testctx, real Redis) adds
it to a message with ``[verdicts] trap_link = yes``; the redirector (same Redis) answers
a click on it with the stored redirect and records a scanner; the same address's next
click of that message is a scanner too, another address's click stays human."""
from __future__ import annotations

import html
import json
import re

import Milter

import oracle
from engage.settings import Settings
from engage.store.links import LinkStore
from engage.web.app import create_app
from support import stored
from support.milterctx import MESSAGE, feed

TRACKING = "https://t.example/x"
SCANNER, PERSON = "192.0.2.50", "203.0.113.9"


def test_trap_link_from_milter_to_verdict(redis_server, redis_client):
    settings = Settings(redis_url=redis_server.url, key_prefix="t:", tracking_url=TRACKING,
                        trap_link=True, rate_limit=0, fast_click_seconds=0, burst_links=0)
    # (timing and bursts are off: the message was injected a moment ago and is clicked
    # three times at once; those signals have their own tests)
    verdict, _, body = feed(settings, LinkStore(redis_client, "t:"), MESSAGE)
    assert verdict == Milter.ACCEPT and body is not None
    head = MESSAGE.split(b"\r\n\r\n", 1)[0]
    rewritten = head.replace(b'X-MSYS-API: {"campaign_id": "spring", "metadata": {"uid": 7},\r\n'
                             b'  "tags": ["sale"]}\r\n', b"").replace(
        b'x-msys-api: {"campaign_id": "ignored"}\r\n', b"") + b"\r\n\r\n" + body
    [template_key] = stored.family_keys(redis_client, "t:", "template")
    urls = [link[0] for link in json.loads(redis_client.get(template_key))["l"]]
    oracle.assert_only_tracking_changed(MESSAGE, rewritten, TRACKING, urls, trap=True)

    text = body.decode()
    [trap] = re.findall(r'<a href="([^"]+)" style="display:none!important" aria-hidden="true" '
                        r'tabindex="-1"></a>', text)
    [link] = [html.unescape(u) for u in re.findall(r'<a href="([^"]+)">Buy</a>', text)]
    client = create_app(settings, redis_client).test_client()

    def click(url: str, ip: str):
        return client.get(url.removeprefix("https://t.example"), environ_base={"REMOTE_ADDR": ip},
                          headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"})

    reply = click(trap, SCANNER)
    assert reply.status_code == 302 and reply.headers["Location"] == TRACKING + "/"
    assert click(link, SCANNER).headers["Location"] == "https://shop.example/p?a=1&b=2"
    assert click(link, PERSON).status_code == 302
    events = stored.events(redis_client, "t:")
    assert [e["target_link_name"] for e in events] == ["engage-trap", "", ""]
    trap_event, after, person = (e["engage"] for e in events)
    assert trap_event["verdict"] == "scanner" and trap_event["reasons"][0] == "trap link"
    assert after["verdict"] == "scanner" and after["signals"]["after_trap"] is True
    assert after["reasons"] == ["same address clicked this message's trap link"]
    assert person["verdict"] == "human"
