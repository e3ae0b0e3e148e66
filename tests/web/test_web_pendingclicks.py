"""A click waits on one round trip and no answered click is lost (engage.pendingclicks):
the lookup journals the raw click, the 302 goes out, the append follows and deletes the
entry; an entry whose append failed is appended by the finisher, exactly once."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from engage.pendingclicks import Finisher, facts_text, parse
from engage.store import keys
from engage.store.events import EventError, EventLog
from engage.store.trackevent import RequestFacts
from support import stored as kept

UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def pending_entries(rclient, message):
    return rclient.xrange(keys.pending_clicks("engage:", keys.shard_of(message.key)))


def raw_count(rclient):
    """Events stored now (kept.count waits for pending clicks first)."""
    return sum(rclient.xlen(keys.events("engage:", shard)) for shard in keys.shard_ids())


def failing_append(monkeypatch):
    """The redirector's appends fail as a timeout would (the finisher's go through)."""
    real = EventLog.append

    def append(self, *args, **kwargs):
        if getattr(self, "fails", False):
            raise EventError("Timeout reading from socket")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(EventLog, "append", append)


def test_the_302_is_answered_before_the_append_which_deletes_the_journal_entry(
        client, mail, rclient):
    message = mail("https://example.com/a")
    response = client.get(f"/c/{message.click(0)}", buffered=False,
                          headers={"User-Agent": UA})
    assert response.status_code == 302 and response.headers["Location"] == "https://example.com/a"
    assert len(pending_entries(rclient, message)) == 1 and raw_count(rclient) == 0
    response.close()  # what gunicorn does once the answer is written
    assert pending_entries(rclient, message) == [] and raw_count(rclient) == 1
    [event] = kept.events(rclient, "engage:")
    assert event["type"] == "click" and event["user_agent"] == UA
    assert event["target_link_url"] == "https://example.com/a"


def test_after_many_clicks_the_journal_is_empty(client, mail, rclient):
    messages = [mail(f"https://example.com/{n}") for n in range(6)]
    for _ in range(5):
        for message in messages:
            assert client.get(f"/c/{message.click(0)}").status_code == 302
            assert client.head(f"/c/{message.click(0)}").status_code == 302
    assert kept.pending(rclient, "engage:") == 0 and raw_count(rclient) == 60


def test_a_link_index_too_high_answers_404_and_leaves_no_entry(client, mail, rclient):
    message = mail("https://example.com/a")
    response = client.get(f"/c/{message.click(5)}", buffered=False)
    assert response.status_code == 404
    response.close()
    assert kept.pending(rclient, "engage:") == 0 and raw_count(rclient) == 0


def test_over_the_rate_limit_nothing_is_journaled(make_app, mail, rclient):
    client = make_app(rate_limit=2).test_client()
    message = mail("https://example.com/a")
    assert [client.get(f"/c/{message.click(0)}", buffered=False).status_code
            for _ in range(4)] == [302, 302, 403, 403]
    assert kept.pending(rclient, "engage:") == 2


def test_a_failed_append_leaves_the_entry_and_the_finisher_appends_it_once(
        make_app, mail, rclient, settings, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="engage.access")
    failing_append(monkeypatch)
    app = make_app()
    app.extensions["engage"].events.fails = True
    message = mail("https://example.com/a", names=("engage-trap",))
    rclient.sadd(keys.trap_clients("engage:", message.key), "x")
    client = app.test_client()
    assert client.get(f"/c/{message.click(0)}", headers={"User-Agent": UA}).status_code == 302
    assert "event=click-pending" in caplog.text
    [(entry_id, fields)] = pending_entries(rclient, message)
    click = parse(fields)
    assert click.token == message.click(0) and click.facts.user_agent == UA
    assert click.state == (1, 1, 1, 0)  # SADD, EXPIRE, SCARD, SISMEMBER as the lookup's
    burst = rclient.keys(f"engage:{keys.tag(keys.shard_of(message.key))}vb:*")
    finisher = Finisher.from_settings(rclient, settings)
    assert finisher.tick() == 0  # younger than PENDING_AGE: its redirector may still append
    assert finisher.tick(now=time.time() + 11) == 1
    assert finisher.tick(now=time.time() + 11) == 0
    assert kept.pending(rclient, "engage:") == 0 and raw_count(rclient) == 1
    [event] = kept.events(rclient, "engage:")
    assert event["user_agent"] == UA and event["target_link_name"] == "engage-trap"
    assert event["engage"]["verdict"] != "human"  # judged: a trap link, from the entry's facts
    # Neither the burst set nor the rate limiter is counted again.
    assert rclient.keys(f"engage:{keys.tag(keys.shard_of(message.key))}vb:*") == burst
    assert rclient.keys("engage:rl:*") == []


def test_two_finishers_at_once_append_an_entry_once(make_app, mail, rclient, settings,
                                                    monkeypatch):
    failing_append(monkeypatch)
    app = make_app()
    app.extensions["engage"].events.fails = True
    client = app.test_client()
    messages = [mail(f"https://example.com/{n}") for n in range(30)]
    for message in messages:
        assert client.get(f"/c/{message.click(0)}").status_code == 302
    assert kept.pending(rclient, "engage:") == 30
    finishers = [Finisher.from_settings(rclient, settings) for _ in range(2)]
    threads = [threading.Thread(target=f.tick, kwargs={"now": time.time() + 11})
               for f in finishers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert kept.pending(rclient, "engage:") == 0 and raw_count(rclient) == 30
    # The same entry finished twice, one after the other: the second is a 'dup'.
    message = mail("https://example.com/again")
    assert client.get(f"/c/{message.click(0)}").status_code == 302
    [(entry_id, fields)] = pending_entries(rclient, message)
    stream = keys.pending_clicks("engage:", keys.shard_of(message.key))
    assert finishers[0].finish(stream, entry_id, fields) not in ("", "dup")
    assert finishers[1].finish(stream, entry_id, fields) == "dup"
    assert raw_count(rclient) == 31


def test_the_redirector_appending_after_the_finisher_stores_nothing_twice(
        client, mail, rclient, settings, caplog):
    caplog.set_level(logging.INFO, logger="engage.access")
    message = mail("https://example.com/a")
    response = client.get(f"/c/{message.click(0)}", buffered=False)
    assert response.status_code == 302
    Finisher.from_settings(rclient, settings).tick(now=time.time() + 11)
    response.close()  # the redirector's append comes late: its entry is gone
    assert raw_count(rclient) == 1 and "event=click-resent" in caplog.text


@pytest.mark.parametrize("fields", [{b"c": b"not json", b"s": b"1 1 1 0"},
                                    {b"c": b'[1,"tok","GET","1.2.3.4","","","",1.5]'},
                                    {b"c": b'[9,"tok","GET","1.2.3.4","","","",1.5]',
                                     b"s": b"1 1 1 0"},
                                    {b"c": b'[1,"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","GET","",'
                                           b'"","","",1.5]', b"s": b"1 1 1 0"}])
def test_an_entry_that_cannot_be_finished_is_deleted_and_logged(rclient, settings, caplog,
                                                                fields):
    stream = keys.pending_clicks("engage:", 4)
    rclient.xadd(stream, fields, id="1000-0")
    assert Finisher.from_settings(rclient, settings).tick() == 1
    assert rclient.xlen(stream) == 0 and "pending click 1000-0 dropped" in caplog.text


def test_the_journal_text_reads_back():
    facts = RequestFacts("192.0.2.1", "agent \u00e9", "fr", None, "https://ref.example/")
    click = parse({b"c": facts_text("tok", "HEAD", facts, 1700000000.25).encode(),
                   b"s": b" 0 3 1"})
    assert (click.token, click.method, click.facts, click.now) == ("tok", "HEAD", facts,
                                                                   1700000000.25)
    assert click.state == (None, 0, 3, 1)


def test_a_full_redis_refuses_the_journal_and_the_append_as_before(
        make_app, mail, rclient, monkeypatch):
    from test_web_limits import memory_limit

    from engage.store.pressure import MemoryGauge

    monkeypatch.setattr(MemoryGauge, "events_allowed", lambda self: True)
    client = make_app().test_client()
    message = mail("https://example.com/x")
    with memory_limit(rclient, fill=True):
        for _ in range(3):
            assert client.get(f"/c/{message.click(0)}", buffered=False).status_code == 302
            assert kept.pending(rclient, "engage:") == 0
        assert raw_count(rclient) == 0
