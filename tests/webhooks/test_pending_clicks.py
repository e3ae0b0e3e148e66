"""The webhooks worker, a real process, appends the clicks a redirector answered but did
not store (engage.pendingclicks): a journal entry older than 10 s becomes its event."""
from __future__ import annotations

import time

from engage.pendingclicks import facts_text
from engage.store import keys
from engage.store.links import Link, LinkStore, MessageRecord, Template, click_token
from engage.store.trackevent import RequestFacts
from support import stored
from support.stored import spread_key

from .conftest import PREFIX


def test_the_worker_appends_a_click_whose_redirector_died_after_the_302(spawn_worker,
                                                                        redis_client):
    template = Template(links=(Link("https://example.com/a", "a"),), campaign_id="c1")
    key = spread_key()
    LinkStore(redis_client, PREFIX).register(key, template, MessageRecord(
        rcpt_to=("jo@example.org",), template_id=template.template_id,
        injection_time=int(time.time()) - 3600))
    clicked = time.time() - 20  # answered 20 s ago; its redirector never appended it
    facts = RequestFacts("192.0.2.9", "Mozilla/5.0 Firefox/120.0", "en", None, "")
    stream = keys.pending_clicks(PREFIX, keys.shard_of(key))
    redis_client.xadd(stream, {"c": facts_text(click_token(key, template.template_id, 0),
                                               "GET", facts, clicked), "s": "1 1 1 0"},
                      id=f"{int(clicked * 1000)}-0")
    worker = spawn_worker()
    deadline = time.monotonic() + 15
    while redis_client.xlen(stream) and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.1)
    assert redis_client.xlen(stream) == 0
    [event] = stored.events(redis_client, PREFIX)
    assert event["type"] == "click" and event["target_link_url"] == "https://example.com/a"
    assert event["user_agent"] == facts.user_agent and event["rcpt_to"] == "jo@example.org"
    assert event["engage"]["verdict"] == "human"
