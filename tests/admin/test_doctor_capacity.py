"""engage doctor's capacity check on a real Redis and a real 3-master Redis Cluster.

A Redis is filled with layout-2 data (records, status hashes, template copies, events with
their indexes and aggregates, spread over the 24 shards, plus layout-1 leftovers), and
each figure the doctor gives is computed here again independently: the rates from what
was written, the costs from MEMORY USAGE ... SAMPLES 0 of every key found by a glob
pattern. A sample smaller than the keyspace stays close to the exact figure; a maxmemory
too small for the retention, links kept forever, and a master that holds too much are
warnings; on a cluster each master is said to hold exactly the shards of its slots.
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from engage import settings as config
from engage.admin import doctor, doctor_capacity, doctor_sizing
from engage.store import aggregates, keys
from engage.store.records import MessageRecord
from engage.store.redisconn import connect
from support.layout1 import message_key, template

P = "cap:"
CAMPAIGN = aggregates.dims("camp", "shop.example")


@dataclasses.dataclass
class Filled:
    sent: int = 0  # messages counted in the last 24 hourly buckets
    events: int = 0  # opens and clicks counted there


def populate(client: Any, prefix: str, messages: int, events: int, seed: int = 3) -> Filled:
    """Layout-2 data as the milter and the redirector write it, with the counts expected."""
    rng, filled, now = random.Random(seed), Filled(), time.time()
    made = [template(n) for n in range(3)]
    recent, old = aggregates.hour_of(now), aggregates.hour_of(now - 30 * 3600)
    pipe = client.pipeline(transaction=False)
    keys_of = []
    for n in range(messages):
        key, used = message_key(rng), made[n % 3]
        shard = keys.shard_of(key)
        keys_of.append(key)
        pipe.set(keys.template(prefix, used.template_id, shard), used.to_json())
        pipe.set(keys.message(prefix, key), MessageRecord(
            rcpt_to=(f"r{n}@example.org",), subject=f"Offer {n}", message_id=f"<{n}@shop>",
            injection_time=int(now), template_id=used.template_id).to_text())
        hour = recent if n % 5 else old  # one in five sent 30 h ago: not counted
        pipe.hincrby(keys.aggregate(prefix, shard, "s", hour), "s" + CAMPAIGN, 1)
        pipe.sadd(keys.aggregate(prefix, shard, "d", hour), "example.org")
        filled.sent += hour == recent
    pipe.hincrby(keys.aggregate(prefix, keys.LAYOUT1, "s", recent), "s" + CAMPAIGN, 7)  # layout 1
    filled.sent += 7
    for n in range(events):
        key = keys_of[rng.randrange(len(keys_of))]
        shard, kind = keys.shard_of(key), ("click", "open")[n % 2]
        entry = f"{int(now * 1000) - n}-{n}"
        pipe.xadd(keys.events(prefix, shard), {"e": '{"type":"%s","m":"%s"}' % (kind, key)}, id="*")
        pipe.zadd(keys.event_index(prefix, shard, kind), {entry: n})
        pipe.zadd(keys.event_index(prefix, shard, kind, "m", key), {entry: n})
        pipe.hset(keys.status(prefix, key), mapping={"opened_at": "2026-12-07T10:00:00.000Z",
                                                     "open_count": 1})
        code = "c" if kind == "click" else "r"
        pipe.hincrby(keys.aggregate(prefix, shard, "e", recent), code + CAMPAIGN, 1)
        pipe.hincrby(keys.aggregate(prefix, shard, "e", recent), "u" + code + CAMPAIGN, 1)  # not an event
        pipe.hincrby(keys.aggregate(prefix, shard, "l", recent), f"{code}{CAMPAIGN}|cta", 1)
        filled.events += 1
    pipe.hset(keys.verdicts(prefix, 5), "1796000000000000", "bot")
    pipe.execute()
    return filled


def usage(client: Any, prefix: str, pattern: str) -> tuple[int, int]:
    """(keys, bytes) of every key named ``prefix`` + ``pattern``, measured in full."""
    nodes = ([client.get_redis_connection(n) for n in client.get_primaries()]
             if hasattr(client, "get_primaries") else [client])
    count = total = 0
    for node in nodes:
        for name in node.scan_iter(match=prefix + pattern, count=1000):
            count += 1
            total += node.memory_usage(name, samples=0)
    return count, total


def expected(client: Any, prefix: str) -> tuple[float, float, int]:
    """(bytes per message, bytes per event, bytes of the last 24 h's aggregates)."""
    messages, records = usage(client, prefix, "{??}m:*")
    _, buckets = usage(client, prefix, "{??}mb:*")
    messages += sum(client.hlen(name) - client.hexists(name, "")
                    for name in client.scan_iter(match=prefix + "{??}mb:*"))
    _, statuses = usage(client, prefix, "{??}ms:*")
    _, templates = usage(client, prefix, "{??}t:*")
    _, streams = usage(client, prefix, "{??}events")
    _, indexes = usage(client, prefix, "{??}e[il]:*")
    _, verdicts = usage(client, prefix, "{??}verdicts")
    stored = sum(client.xlen(keys.events(prefix, s)) for s in keys.shard_ids())
    recent = aggregates.hour_of(time.time())
    _, metrics = usage(client, prefix, f"*agg:?:{recent}")
    return ((records + buckets + statuses + templates) / messages, (streams + indexes + verdicts) / stored,
            metrics)


def settings_with(**changes: Any) -> config.Settings:
    return dataclasses.replace(config.Settings(), key_prefix=P, **changes)


def test_the_figures_are_the_ones_measured_key_by_key(redis_client):
    filled = populate(redis_client, P, messages=900, events=400)
    rates = doctor_sizing.rates(redis_client, P, time.time())
    costs = doctor_sizing.costs(redis_client, P, per_family=10_000)  # every key: exact
    per_message, per_event, metrics = expected(redis_client, P)
    assert (rates.messages, rates.events, rates.metrics_bytes) == (filled.sent, filled.events, metrics)
    assert costs.messages == 900 and costs.events == 400
    assert costs.per_message == pytest.approx(per_message) and costs.per_event == pytest.approx(per_event)
    settings = settings_with(link_retention_days=30, events_retention_days=7, metrics_retention_days=90)
    needed = doctor_capacity.need(rates, costs, settings)
    assert needed.links == pytest.approx(filled.sent * per_message * 30)
    assert needed.events == pytest.approx(filled.events * per_event * 7)
    assert needed.metrics == metrics * 90
    first, second = doctor_capacity.report(rates, costs, doctor_sizing.placement(redis_client, P), settings)
    assert first.level == second.level == "ok"
    assert (f"last 24 h: {filled.sent} messages sent, {filled.events} opens and clicks" in first.text
            and f"measured {doctor_capacity.size(per_message)} per message" in first.text)
    assert second.text.startswith(f"the configured retention needs about "
                                  f"{doctor_capacity.size(needed.bounded)}: links "
                                  f"{doctor_capacity.size(needed.links)} (30 days of [redis] "
                                  "link_retention_days); events ")


def test_the_figures_match_on_what_the_milter_and_the_redirector_wrote(redis_client, redis_server):
    """Messages registered by the link store, clicks and opens through the redirector app:
    the rates are what was sent and recorded, the costs what MEMORY USAGE says key by key."""
    from engage.store.links import LinkStore
    from engage.store.tokens import click_token, new_message_key, open_token
    from engage.web.app import create_app
    store, now = LinkStore(redis_client, P), time.time()
    sent = []
    for n in range(400):  # in buckets, as the milter registers them
        key, used = new_message_key(), template(n % 4)
        store.register(key, used, MessageRecord(rcpt_to=(f"r{n}@example.org",), subject=f"Offer {n}",
                                                injection_time=int(now), template_id=used.template_id))
        sent.append((key, used.template_id))
    app = create_app(dataclasses.replace(config.Settings(), redis_url=redis_server.url, key_prefix=P,
                                         tracking_url="https://click.example.com", rate_limit=0))
    web = app.test_client()
    for n, (key, tid) in enumerate(sent[:150]):
        assert web.get(f"/c/{click_token(key, tid, n % 2)}").status_code == 302
        assert web.get(f"/o/{open_token(key, tid)}").status_code == 200
    stored = sum(redis_client.xlen(keys.events(P, s)) for s in keys.shard_ids())
    rates = doctor_sizing.rates(redis_client, P, time.time())
    costs = doctor_sizing.costs(redis_client, P, per_family=10_000)
    per_message, per_event, metrics = expected(redis_client, P)
    assert (rates.messages, rates.events, rates.metrics_bytes) == (400, stored, metrics)
    assert stored == 300 and costs.events == 300
    assert costs.per_message == pytest.approx(per_message) and costs.per_event == pytest.approx(per_event)


def test_a_sample_of_a_tenth_of_the_keyspace_stays_close(redis_client):
    populate(redis_client, P, messages=3000, events=600)
    per_message, per_event, _ = expected(redis_client, P)
    costs = doctor_sizing.costs(redis_client, P, budget=500, per_family=50)
    assert costs.sampled < 200
    assert costs.per_message == pytest.approx(per_message, rel=0.15)
    assert costs.messages == pytest.approx(3000, rel=0.25)


def test_a_maxmemory_too_small_for_the_retention_is_a_warning(redis_client, redis_server, tmp_path):
    populate(redis_client, P, messages=600, events=100)
    used = redis_client.info("memory")["used_memory"]
    conf = tmp_path / "engage.conf"
    conf.write_text(f"[redis]\nurl = {redis_server.url}\nkey_prefix = {P}\nlink_retention_days = 400\n"
                    "[tracking]\nurl = https://click.example.com\n")
    only = frozenset(doctor.TOPICS) - {"config", "capacity"}
    redis_client.config_set("maxmemory", used + 2_000_000)
    try:
        findings = doctor.run(doctor.Options(config=str(conf), skip=only, service_user="no-such-user"))
    finally:
        redis_client.config_set("maxmemory", 0)
    (warning,) = [f for f in findings if f.level == "warn"]
    assert warning.topic == "capacity" and "(400 days of [redis] link_retention_days)" in warning.text
    assert "more than Redis may hold" in warning.text, doctor.render(findings)
    assert doctor.exit_status(findings) == 0, doctor.render(findings)
    assert f"maxmemory {doctor_capacity.size(used + 2_000_000)}" in warning.text


def test_links_kept_forever_say_their_growth_and_when_it_fills_redis(redis_client):
    filled = populate(redis_client, P, messages=600, events=100)
    rates, costs = doctor_sizing.rates(redis_client, P, time.time()), doctor_sizing.costs(redis_client, P)
    masters = doctor_sizing.placement(redis_client, P)
    per_day = filled.sent * expected(redis_client, P)[0]
    settings = settings_with(metrics_retention_days=2)
    bounded = doctor_capacity.need(rates, costs, settings).bounded  # events and metrics
    masters[0].maxmemory = int((max(masters[0].used, bounded) + 30.2 * per_day) / 0.9)  # 30 days away
    finding = doctor_capacity.report(rates, costs, masters, settings)[1]
    assert f"links grow {doctor_capacity.size(per_day)} a day, kept forever" in finding.text
    assert "reach the high-water mark in about 30 days" in finding.text and finding.level == "warn"


def slot_owners(cluster: Any) -> dict[int, str]:
    """slot -> "host:port" of its master, from CLUSTER SLOTS."""
    client = redis.Redis.from_url(cluster.urls[0])
    try:
        slots = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    return {slot: f"{master[0].decode()}:{master[1]}"
            for start, end, master, *_ in slots for slot in range(start, end + 1)}


def test_on_a_cluster_each_master_holds_the_shards_of_its_slots(redis_cluster):
    redis_cluster.flush()
    client = connect(redis_cluster.url, timeout=30)
    try:
        populate(client, "cap:", messages=1200, events=300)
        owners = slot_owners(redis_cluster)
        masters = doctor_sizing.placement(client, "cap:")
        assert len(masters) == 3
        for master in masters:
            assert master.shards == [s for s in keys.shard_ids(layout1=True)
                                     if owners[key_slot(keys.events("cap:", s).encode())] == master.address]
        assert sorted(len([s for s in m.shards if s >= 0]) for m in masters) == [8, 8, 8]
        settings = dataclasses.replace(settings_with(), key_prefix="cap:")
        report = doctor_capacity.report(doctor_sizing.rates(client, "cap:", time.time()),
                                        doctor_sizing.costs(client, "cap:"), masters, settings)
        assert [f.level for f in report] == ["ok"] * 5
        crowded = masters[0].shards[0]
        pipe = client.pipeline(transaction=False)
        for n in range(3000):
            pipe.set(keys.message("cap:", f"x{n}", crowded), "r")
        pipe.execute()
        masters = doctor_sizing.placement(client, "cap:")
        report = doctor_capacity.report(doctor_sizing.rates(client, "cap:", time.time()),
                                        doctor_sizing.costs(client, "cap:"), masters, settings)
        (warning,) = [f for f in report if f.level == "warn"]
        assert warning.text.startswith(f"{masters[0].address} holds shards ")
        assert "more than 15% above an equal share (33%)" in warning.text
    finally:
        client.close()


def test_redis_away_is_a_skip_here_since_the_redis_check_says_it(tmp_path):
    from support.procs import free_port
    settings = dataclasses.replace(settings_with(), redis_url=f"redis://127.0.0.1:{free_port()}/0")
    (finding,) = doctor_capacity.check_capacity(settings, doctor.Options(timeout=1))
    assert finding.level == "skip" and finding.text.startswith("not measured: Redis does not answer")
