"""The event indexes (engage.store.eventindex) on a real Redis: a sorted set up to 128
entries, a stream of ordinals past that, counted and read the same whichever it is; the
stream ids of a score range; the sorted sets of releases before read with them."""
from __future__ import annotations

import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engage.store import eventindex, keys
from engage.store.eventids import score_of
from engage.store.events import EventLog, RequestFacts, build_event
from engage.store.links import Link, MessageRecord, Resolved, Template
from engage.store.scripts.eventindex import LISTED
from support.stored import key_in_shard

P = "ix:"
SHARD = 5
TEMPLATE = Template(links=(Link("https://example.com/x"),), campaign_id="c1")


def _parts(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


@given(shard=st.sampled_from([0, 5, 23, keys.LAYOUT1]),
       ids=st.lists(st.tuples(st.integers(1000, 1003), st.integers(0, 60)), min_size=1),
       low=st.integers(999_000, 1_004_999), span=st.integers(0, 3000))
def test_the_id_range_holds_exactly_the_ids_whose_score_is_in_range(shard, ids, low, span):
    first, last = (_parts(end) for end in eventindex.id_range(low, low + span, shard))
    for ms, seq in ids:
        inside = low <= score_of(f"{ms}-{seq}", shard) <= low + span
        assert inside == (first <= (ms, seq) <= last)


def _click(key: str) -> dict:
    record = MessageRecord(rcpt_to=("ann@example.com",), message_id="<m@example.com>",
                           template_id=TEMPLATE.template_id)
    return build_event("click", Resolved(key, TEMPLATE, record, TEMPLATE.links[0]),
                       RequestFacts("192.0.2.1"), time.time())


def _check(log: EventLog, spec: tuple[str, str, str], scores: list[int],
           rng: random.Random) -> None:
    """Counts and newest entries of random windows (ends on and next to stored scores)
    as the scores themselves say."""
    for _ in range(40):
        low, high = sorted(rng.choice(scores) + rng.choice((-1, 0, 1)) for _ in range(2))
        want = sorted((s for s in scores if low <= s <= high), reverse=True)
        assert log.indexes.counts([[spec]], low, high) == [len(want)]
        count = rng.choice((1, 7, 500))
        found = [item for items in log.indexes.newest([spec], high, low, count)
                 for item in items]
        assert sorted((score for score, _, _ in found), reverse=True) == want[:count]


@pytest.mark.parametrize("spec", [("click", "", ""), ("click", "c", "c1"),
                                  ("open", "x", "KEY"), ("click", "m", "<m@example.com>")])
def test_an_index_counts_and_reads_the_same_as_a_sorted_set_and_as_a_stream(redis_client, spec):
    log = EventLog(redis_client, P)
    rng = random.Random(3)
    key = key_in_shard(SHARD)
    spec = (spec[0], spec[1], key if spec[2] == "KEY" else spec[2])
    name = eventindex.read(P, SHARD, [spec])[0]
    scores: list[int] = []
    for n in range(LISTED + 70):
        scores.append(score_of(log.append(_click(key)), SHARD))
        if n in (5, LISTED - 1, LISTED, LISTED + 69):
            assert redis_client.type(name) == (b"zset" if n < LISTED else b"stream")
            _check(log, spec, scores, rng)
    assert [int(fields[b"n"]) for _, fields in redis_client.xrange(name)] == list(
        range(1, LISTED + 71))  # every entry kept across the rewrite, in order


def test_the_sorted_sets_of_releases_before_are_read_with_the_indexes(redis_client):
    """Events indexed before the upgrade (``ei:``) and after (``el:``) count and page as
    one index until the old sorted set expires."""
    log = EventLog(redis_client, P)
    key = key_in_shard(SHARD)
    older = [log.append(_click(key)) for _ in range(3)]
    old_index = keys.event_index(P, SHARD, "click", "c", "c1")
    new_index = keys.event_index(P, SHARD, "click", "c", "c1", listed=True)
    redis_client.delete(new_index)
    redis_client.zadd(old_index, {entry: score_of(entry, SHARD) for entry in older})
    newer = [log.append(_click(key)) for _ in range(LISTED + 2)]  # the new one a stream
    scores = sorted(score_of(entry, SHARD) for entry in older + newer)
    assert redis_client.type(new_index) == b"stream"
    assert log.indexes.counts([[("click", "c", "c1")]], 0, scores[-1]) == [len(scores)]
    page, last, more = log.page([("click", "c", "c1")], scores[-1], 0, 1000)
    assert page.count(b'"event_id"') == len(scores) and last == scores[0] and not more
