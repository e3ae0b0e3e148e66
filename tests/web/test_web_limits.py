"""What one client can make the redirector store, and the redirector with a full Redis:
client fields capped, repeated opens counted, opens limited per network, appends
idempotent, events paused above the memory high-water mark, links redirected whatever
Redis's memory state (docs/limits.md)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engage.store import keys
from engage.store.events import MAX_CLIENT_FIELD, EventLog, build_event, clip
from engage.store.links import LinkStore, MessageRecord, Template, new_message_key
from engage.store.redisconn import run_script
from engage.web.app import GIF
from engage.web.opengate import network_label, network_of
from support import stored as kept


def stored(events):
    return kept.events(events.client, events.prefix)


def status(rclient, message):
    return {k.decode(): v.decode() for k, v in rclient.hgetall(keys.status("engage:", message.key)).items()}


@contextmanager
def memory_limit(rclient, fill: bool) -> Iterator[None]:
    """maxmemory a little over what Redis holds now (noeviction); with ``fill``, writes
    until Redis refuses them. Put back (no limit, data flushed) afterwards."""
    used = rclient.info("memory")["used_memory"]
    rclient.config_set("maxmemory-policy", "noeviction")
    rclient.config_set("maxmemory", used + 2_000_000)
    try:
        if fill:
            refused, n = 0, 0
            while refused < 20:
                try:
                    rclient.set(f"filler:{n}", "x" * 200)
                    n += 1
                except Exception:  # OOM command not allowed
                    refused += 1
        yield
    finally:
        rclient.config_set("maxmemory", 0)
        rclient.flushdb()


def test_clip_cuts_at_a_character_boundary():
    assert clip("a" * 600) == "a" * MAX_CLIENT_FIELD
    cut = clip("€" * 300)  # 3 bytes each
    assert len(cut.encode()) <= MAX_CLIENT_FIELD and cut == "€" * (MAX_CLIENT_FIELD // 3)
    assert clip("short") == "short"


def test_client_fields_are_stored_at_most_512_bytes(client, mail, events):
    message = mail("https://example.com/")
    long = {"User-Agent": "U" * 8000, "Referer": "https://r.example/" + "r" * 8000,
            "Accept-Language": "de," * 3000}
    assert client.get(f"/c/{message.click(0)}", headers=long).status_code == 302
    assert client.get(f"/i/{message.open}", headers=long).data == GIF
    click, opened = stored(events)
    for event in (click, opened):
        assert event["user_agent"] == "U" * MAX_CLIENT_FIELD
    assert len(click["referer"]) == MAX_CLIENT_FIELD and click["referer"].startswith("https://r.")
    assert len(click["accept_language"].encode()) == MAX_CLIENT_FIELD
    raw = kept.entries(events.client, events.prefix)
    assert all(len(fields[b"e"]) < 4000 for _, _, fields in raw)


def test_a_repeated_open_from_one_network_is_counted_not_stored(client, mail, events, rclient):
    message = mail("https://example.com/")
    for host in ("127.0.0.1", "127.0.0.1", "127.0.0.9", "127.0.0.200"):  # one /24
        response = client.get(f"/o/{message.open}", environ_base={"REMOTE_ADDR": host},
                              headers={"User-Agent": f"agent-{host}"})
        assert response.data == GIF
    assert client.get(f"/i/{message.open}").data == GIF  # the top pixel counts apart
    assert [event["type"] for event in stored(events)] == ["open", "initial_open"]
    assert status(rclient, message)["open_count"] == "1"
    assert status(rclient, message)["repeat_opens"] == "3"
    client.get(f"/o/{message.open}", environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert [event["ip_address"] for event in stored(events)][-1] == "192.0.2.1"
    assert status(rclient, message)["open_count"] == "2"


def test_ipv6_clients_are_counted_per_64():
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::"
    assert network_of("2001:db8:1:3::1") != network_of("2001:db8:1:2::1")
    assert network_of("::ffff:198.51.100.7") == network_of("198.51.100.200") == "198.51.100.0"
    assert network_of("not an address") == ""


def test_repeats_from_one_ipv6_64(client, mail, events, rclient):
    message = mail("https://example.com/")
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::1"):
        client.get(f"/o/{message.open}", environ_base={"REMOTE_ADDR": host})
    assert [event["ip_address"] for event in stored(events)] == ["2001:db8:1:2::1",
                                                                 "2001:db8:1:3::1"]
    assert status(rclient, message)["repeat_opens"] == "1"


@pytest.mark.parametrize("mode", ["full", "truncated", "none"])
def test_opens_per_network_are_limited_and_the_gif_still_served(make_app, mail, events,
                                                                rclient, mode):
    client = make_app(open_limit=3, open_repeat_window=0, ip_addresses=mode).test_client()
    messages = [mail("https://example.com/") for _ in range(5)]
    for n, message in enumerate(messages):
        response = client.get(f"/o/{message.open}",
                              environ_base={"REMOTE_ADDR": f"198.51.100.{n + 1}"})
        assert response.status_code == 200 and response.data == GIF
    assert len(stored(events)) == 3
    other = client.get(f"/o/{messages[4].open}", environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert other.data == GIF and len(stored(events)) == 4
    keys = [key.decode() for key in rclient.scan_iter("engage:o*")]
    assert keys and not any("198.51.100.1" in key[:-2] or "198.51.100.5" in key for key in keys)
    names = " ".join(keys)
    if mode == "none":
        assert "198.51.100" not in names and "203.0.113" not in names
    else:
        assert f"engage:ol:{network_label('198.51.100.9', mode)}:" in names


def test_an_append_sent_twice_is_stored_once(settings, rclient, mail):
    """What redis-py does after a timeout: the same command (same append id) again."""
    events = EventLog(rclient, settings.key_prefix)
    message = mail("https://example.com/")
    resolved = LinkStore(rclient, settings.key_prefix).resolve(message.click(0))
    from engage.store.events import RequestFacts

    event = build_event("click", resolved, RequestFacts("192.0.2.1"), time.time())
    keys, args = events._keys_args(event, None)
    first = run_script(rclient, events._append, keys, args)
    again = run_script(rclient, events._append, keys, args)
    assert first.count(b"-") == 1 and again == b"dup"
    assert kept.count(rclient, events.prefix) == 1
    assert status(rclient, message)["click_count"] == "1"
    [hour] = [key for key in kept.family_keys(rclient, "engage:", "aggregates")
              if b"agg:e:" in key]
    assert rclient.hget(hour, "c|spring|example.com") == b"1"
    # A new append (new id) of the same event is a second event.
    events.append(event)
    assert kept.count(rclient, events.prefix) == 2


def test_a_registration_sent_twice_counts_the_message_once(rclient):
    store = LinkStore(rclient, "engage:")
    template = Template(links=(), campaign_id="c1", sending_domain="example.com")
    now = int(time.time())
    record = MessageRecord(rcpt_to=("a@example.com",), injection_time=now,
                           template_id=template.template_id)
    key = new_message_key()
    store.register(key, template, record)
    store.register(key, template, record)  # a resend: the record exists, nothing counts
    sent = rclient.hget(keys.aggregate("engage:", keys.shard_of(key), "s",
                                       time.strftime('%Y-%m-%dT%H', time.gmtime(now))),
                        "s|c1|example.com")
    assert sent == b"1"
    assert store.resolve(key + template.template_id) is not None


def test_events_pause_above_the_high_water_mark(make_app, mail, events, rclient, caplog):
    message = mail("https://example.com/")
    with memory_limit(rclient, fill=False):
        client = make_app(events_high_water=0.1).test_client()
        for _ in range(3):
            assert client.get(f"/c/{message.click(0)}").status_code == 302
        assert client.get(f"/i/{message.open}").data == GIF
        assert stored(events) == []
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json["status"] == "degraded"
        assert health.json["memory"]["events"] == "paused"
        assert health.json["memory"]["state"] == "above-high-water"
        assert health.json["dropped_events"]["high-water"] == 4
        assert any("events not recorded" in r.message and "high-water" in r.message
                   for r in caplog.records)
        # The milter's writes go on: registering below maxmemory still works.
        assert mail("https://example.com/later").record is not None


def test_a_full_redis_still_redirects_every_known_link(make_app, mail, events, rclient):
    client = make_app(rate_limit=100, events_high_water=1.0).test_client()
    messages = [mail(f"https://example.com/{n}", f"https://example.org/{n}") for n in range(5)]
    with memory_limit(rclient, fill=True):
        for n, message in enumerate(messages):
            for index, url in enumerate((f"https://example.com/{n}", f"https://example.org/{n}")):
                response = client.get(f"/c/{message.click(index)}")
                assert response.status_code == 302 and response.headers["Location"] == url
            v1 = client.get(f"/v1/track/click/{message.click(0)}")
            assert v1.status_code == 302
            assert client.get(f"/o/{message.open}").data == GIF
        assert client.get("/c/" + "A" * 29).status_code == 404
        health = kept.health_when_full(rclient, lambda: client.get("/healthz").json)
        assert health["status"] == "degraded" and health["memory"]["state"] == "full"
        dropped = health["dropped_events"]  # full is above any mark: most are not even tried
        assert health["refused_writes"] > 0 and dropped["high-water"] + dropped["refused"] == 20
        assert kept.count(rclient, events.prefix) == 0


def test_a_write_refused_for_memory_is_counted_and_the_link_still_redirects(
        make_app, mail, events, rclient, monkeypatch):
    """Between two readings of the gauge Redis may fill up: the append is refused."""
    from engage.store.pressure import MemoryGauge

    monkeypatch.setattr(MemoryGauge, "events_allowed", lambda self: True)
    client = make_app().test_client()
    message = mail("https://example.com/x")
    with memory_limit(rclient, fill=True):
        for _ in range(3):
            assert client.get(f"/c/{message.click(0)}").status_code == 302
        assert client.get(f"/o/{message.open}").data == GIF
        health = client.get("/healthz").json
        assert health["dropped_events"]["refused"] == 4 and health["refused_writes"] >= 4
        assert kept.count(rclient, events.prefix) == 0
