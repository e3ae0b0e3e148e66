"""Pages merged over the shards (engage.store.eventpages) on a real Redis: every event
once, newest first, whatever the page size, with layout 1's stream read as one more
shard; event ids unique across shards and naming their entry."""
from __future__ import annotations

import json
import random
import time

import pytest

from engage.store import keys
from engage.store.events import (
    EventLog,
    RequestFacts,
    build_event,
    entries_of,
    score_of,
    with_event_id,
)
from engage.store.links import Link, MessageRecord, Resolved, Template
from support.stored import spread_key

P = "pg:"
TEMPLATE = Template(links=(Link("https://example.com/x"),), campaign_id="c1")
NOW = time.time()


def event(kind: str, key: str, rcpt: str) -> dict:
    record = MessageRecord(rcpt_to=(rcpt,), template_id=TEMPLATE.template_id)
    link = TEMPLATE.links[0] if kind == "click" else None
    return build_event(kind, Resolved(key, TEMPLATE, record, link), RequestFacts("192.0.2.1"),
                       NOW)


@pytest.fixture
def filled(redis_client):
    """600 events of random messages (so of every shard), a third of them to one
    recipient, and 30 events written to layout 1's stream as the old code did."""
    log = EventLog(redis_client, P, retention_days=10)
    ids: dict[str, set[int]] = {"all": set(), "ann": set()}
    rng = random.Random(7)
    for n in range(600):
        key = spread_key()
        rcpt = "ann@example.com" if n % 3 == 0 else f"u{n}@example.com"
        appended = event(rng.choice(("click", "open")), key, rcpt)
        score = score_of(log.append(appended, now=NOW), keys.shard_of(key))
        ids["all"].add(score)
        if rcpt.startswith("ann"):
            ids["ann"].add(score)
    old_ms = int(NOW * 1000) - 3_600_000  # written before the upgrade: an hour earlier
    for n in range(30):  # layout 1: one untagged stream, ids ms*1000+seq, its own indexes
        entry = redis_client.xadd(keys.events(P, keys.LAYOUT1), {"e": json.dumps(
            event("open", f"old{n:04d}xxxxxxxxx", "ann@example.com"))}, id=f"{old_ms + n}-0")
        score = score_of(entry, keys.LAYOUT1)
        for name in (keys.event_index(P, keys.LAYOUT1, "open"),
                     keys.event_index(P, keys.LAYOUT1, "open", "r", "ann@example.com")):
            redis_client.zadd(name, {entry: score})
        ids["all"].add(score)
        ids["ann"].add(score)
    return log, ids


def walk(log: EventLog, specs, per_page: int) -> list[int]:
    """Every page in turn, as the events API's cursor does: the next top is last - 1."""
    seen, top = [], 10**16
    while True:
        joined, last, more = log.page(specs, top, 0, per_page)
        page = [item["event_id"] for item in json.loads(b"[" + joined + b"]")]
        assert len(page) <= per_page
        seen += [int(event_id) for event_id in page]
        if not more:
            return seen
        assert page and last == int(page[-1])
        top = last - 1


@pytest.mark.parametrize("per_page", [1, 7, 50, 333, 1000])
def test_pages_walk_every_event_once_newest_first_over_all_shards(filled, per_page):
    log, ids = filled
    everything = [("click", "", ""), ("open", "", "")]
    seen = walk(log, everything, per_page)
    assert seen == sorted(ids["all"], reverse=True)
    ann = [("click", "r", "ann@example.com"), ("open", "r", "ann@example.com")]
    assert walk(log, ann, per_page) == sorted(ids["ann"], reverse=True)


def test_the_events_came_from_many_shards_and_ids_never_collide(filled, redis_client):
    log, ids = filled
    used = [shard for shard in keys.shard_ids() if redis_client.xlen(log.stream_of(shard))]
    assert len(used) == keys.SHARDS
    assert len(ids["all"]) == 630  # unique: a shard's ids are ms*1000 + shard*41 + seq


def test_an_event_id_names_its_shard_and_entry(filled, redis_client):
    log, _ = filled
    for shard in (0, 13, 23, keys.LAYOUT1):
        entry_id, fields = redis_client.xrange(log.stream_of(shard), count=1)[0]
        event_id = score_of(entry_id, shard)
        assert (shard, entry_id.decode()) in entries_of(event_id)
        [text] = log.fetch_many([(shard, entry_id)])
        assert text == with_event_id(entry_id, fields[b"e"], shard)


def test_ids_within_one_millisecond_of_one_shard_stay_unique_up_to_41(redis_client):
    """Same ms, same shard: seq 0..40 give distinct ids; the next ones share the last."""
    scores = [score_of(f"1800000000000-{seq}", 5) for seq in range(45)]
    assert len(set(scores[:41])) == 41 and set(scores[41:]) == {scores[40]}
    assert max(scores) < score_of("1800000000000-0", 6)  # below the next shard's ids
