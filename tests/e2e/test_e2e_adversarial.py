"""End to end with the defaults: bodies built to make a scanner slow never hold up other
mail. Each adversarial body goes through the sandbox Postfix three times, up to four at
once, while normal tracked messages are sent one after another; every normal message
must get its 250 before the client gives up at 5 s, and come out tracked."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from test_e2e_postfix import TRACKING, as_sent, stored_links

from engage.store.links import LinkStore
from newsletter import newsletter
from oracle import assert_only_tracking_changed

SIZE = 256 * 1024


def _lines(text: str, width: int = 76) -> bytes:
    data = text.encode()
    return b"\r\n".join(data[i:i + width] for i in range(0, len(data), width)) + b"\r\n"


def _message(body: bytes, ctype: str = "text/html") -> bytes:
    return (b"From: a@shop.example\r\nTo: r@example.net\r\nSubject: adversarial\r\n"
            b"Content-Type: " + ctype.encode() + b"; charset=utf-8\r\n\r\n" + body)


ADVERSARIAL = {
    "a without >": _message(_lines("<a " * (SIZE // 3))),
    "unclosed href": _message(_lines('<a href="' * (SIZE // 9))),
    "unclosed comments": _message(_lines("<!--" * (SIZE // 4))),
    "unclosed script": _message(_lines("<script" * (SIZE // 7))),
    "parentheses after a text URL": _message(_lines("http://a" + ")" * SIZE), "text/plain"),
    "many links on one line": _message(('<a href="https://a.example/x">x</a>' * (SIZE // 36)).encode() + b"\r\n"),
}


def test_adversarial_bodies_never_hold_up_normal_mail(start_milter, postfix_sandbox, redis_client):
    milter = start_milter()
    postfix = postfix_sandbox(milter)
    store = LinkStore(redis_client, "test:")
    normal = newsletter(links=20)
    adversarial = [raw for raw in ADVERSARIAL.values() for _ in range(3)]
    normal_rcpts = []
    with ThreadPoolExecutor(4) as pool:  # four adversarial messages in flight at a time
        pending = [pool.submit(postfix.send, raw, "bad@example.com", [f"adv{index}@example.org"])
                   for index, raw in enumerate(adversarial)]
        for index in range(len(adversarial)):
            rcpt = f"normal{index}@example.org"
            assert postfix.send(normal, "news@shop.example.com", [rcpt], timeout=5) == {}
            normal_rcpts.append(rcpt)
        assert [future.result(timeout=120) for future in pending] == [{}] * len(adversarial)
    delivered = postfix.wait_delivered(2 * len(adversarial), timeout=120)
    by_rcpt = {re.search(rb"\nDelivered-To: (\S+)", m).group(1).decode(): m for m in delivered}
    for rcpt in normal_rcpts:
        sent = as_sent(by_rcpt[rcpt])
        links = stored_links(store, sent)
        assert len(links) == 41, rcpt  # 20 products + unsubscribe in html, 20 text URLs
        assert_only_tracking_changed(normal, sent, TRACKING, links)
    for index, raw in enumerate(adversarial):
        sent = as_sent(by_rcpt[f"adv{index}@example.org"])
        assert_only_tracking_changed(raw, sent, TRACKING, stored_links(store, sent))
    assert milter.alive()
