"""engage.store.events: the event object and how stream readers get it back."""
from __future__ import annotations

import json

import pytest

from engage.store import keys
from engage.store.events import RequestFacts, build_event, index_values, iso_time, score_of
from engage.store.links import Link, MessageRecord, Resolved, Template, new_message_key
from support import stored

TEMPLATE = Template(links=(Link("https://example.com/x", "cta"),), campaign_id="c1",
                    tags=("a",), friendly_from="f@example.com", sending_domain="example.com",
                    open_tracking=False)
RECORD = MessageRecord(rcpt_to=("Bob@Example.com",), mail_from="b@example.com", subject="S",
                       message_id="<m@x>", queue_id="Q", injection_time=1700000000,
                       metadata={"k": "v"}, template_id=TEMPLATE.template_id)


def test_open_event_has_sparkpost_fields_and_no_link_fields():
    event = build_event("open", Resolved("tx1", TEMPLATE, RECORD, None),
                        RequestFacts("192.0.2.1", "UA", "en"), 1700000001.5)
    assert event["type"] == "open" and event["timestamp"] == "2023-11-14T22:13:21.500Z"
    assert event["open_tracking"] is False and event["initial_pixel"] is False
    assert event["transmission_id"] == "tx1" and event["rcpt_meta"] == {"k": "v"}
    assert not {"target_link_url", "target_link_name", "accept_language", "geo_ip"} & set(event)


def test_index_values_cover_every_indexed_filter():
    event = build_event("click", Resolved("tx1", TEMPLATE, RECORD, TEMPLATE.links[0]),
                        RequestFacts("192.0.2.1"), 1700000001)
    dims = dict(index_values(event))
    assert dims["c"] == "c1" and dims["r"] == "bob@example.com" and dims["m"] == "<m@x>"
    assert dims["x"] == "tx1" and len(dims["s"]) == 24


def test_stream_readers_get_the_event_with_its_id(events):
    event = build_event("click", Resolved("tx1", TEMPLATE, RECORD, TEMPLATE.links[0]),
                        RequestFacts("192.0.2.1"), 1700000001)
    entry_id = events.append(event)
    shard = keys.shard_of("tx1")
    [(stored_id, fields)] = events.client.xrange(events.stream_of(shard))
    [decoded] = events.decoded(shard, [(stored_id, fields)])
    assert decoded == {**event, "event_id": str(score_of(entry_id, shard))}
    assert [text for text in events.fetch_json(shard, [entry_id])] == [
        json.dumps(decoded, separators=(",", ":")).encode()]
    assert json.loads(fields[b"e"]) == event


@pytest.mark.parametrize("verdict", [
    {"verdict": "human"}, {"verdict": "human", "reasons": []},  # the second stored as 0
    {"verdict": "scanner", "reasons": ["HEAD request"], "signals": {"method": "HEAD"}}])
def test_an_event_stored_with_its_token_refers_to_its_message_and_reads_back_whole(events,
                                                                                   verdict):
    """What the redirector stores: the request's fields and the open token; read back
    (a page, by id, a webhook batch, a recompute) it is the event build_event made."""
    from engage.store.links import LinkStore
    from engage.store.tokens import new_message_key as bucketed_key
    key = bucketed_key()
    LinkStore(events.client, events.prefix).register(key, TEMPLATE, RECORD)
    resolved = Resolved(key, TEMPLATE, RECORD, TEMPLATE.links[0])
    event = build_event("click", resolved, RequestFacts("192.0.2.1", "Agent/1", "fr", None, "r"),
                        1700000001, verdict)
    entry_id = events.append(event, resolved=resolved)
    shard = keys.shard_of(key)
    [(stored_id, fields)] = events.client.xrange(events.stream_of(shard))
    assert len(fields[b"e"]) < len(json.dumps(event)) / 2
    assert RECORD.rcpt_to[0].encode() not in fields[b"e"] and b"https://" not in fields[b"e"]
    assert (b'"v":0' in fields[b"e"]) == (verdict == {"verdict": "human", "reasons": []})
    whole = {**event, "event_id": str(score_of(entry_id, shard))}
    assert events.decoded(shard, [(stored_id, fields)]) == [whole]
    [text] = events.fetch_json(shard, [entry_id])
    assert json.loads(text) == whole
    page, _, _ = events.page([("click", "", "")], 2**62, 0, 10)
    assert json.loads(b"[" + page + b"]") == [whole]


def test_an_event_takes_its_time_from_the_stream_id_when_it_can(events):
    """An event's ms is its stream id's: no time in the entry. An event older than the
    stream's last entry (a redirector whose clock is behind) or a second or more away from
    Redis's clock keeps its time in the entry, and the ids stay Redis's."""
    import time

    from engage.store.links import LinkStore
    from engage.store.tokens import new_message_key as bucketed_key
    key = bucketed_key()
    LinkStore(events.client, events.prefix).register(key, TEMPLATE, RECORD)
    resolved, shard, now = Resolved(key, TEMPLATE, RECORD, None), keys.shard_of(key), time.time()
    appended = []
    for moment in (now, now - 0.5, now + 30, None):  # None: the time of that append
        event = build_event("open", resolved, RequestFacts("192.0.2.1"),
                            time.time() if moment is None else moment, {"verdict": "human"})
        appended.append((events.append(event, resolved=resolved), event))
    entries = events.client.xrange(events.stream_of(shard))
    assert [b'"s":' in fields[b"e"] for _, fields in entries] == [False, True, True, False]
    assert iso_time(int(entries[0][0].split(b"-")[0]) / 1000) == appended[0][1]["timestamp"]
    assert all(int(entry_id.split(b"-")[0]) < (now + 2) * 1000 for entry_id, _ in entries)
    assert events.decoded(shard, entries) == [
        {**event, "event_id": str(score_of(entry_id, shard))} for entry_id, event in appended]


def test_events_of_one_millisecond_keep_unique_event_ids(events):
    """Past the shard's ids of one ms (41), events of the same ms take Redis's ids: an
    event_id names one event (a batch of imported events, a benchmark, a burst)."""
    import time

    from engage.store.links import LinkStore
    from engage.store.tokens import new_message_key as bucketed_key
    key = bucketed_key()
    LinkStore(events.client, events.prefix).register(key, TEMPLATE, RECORD)
    resolved, shard, now = Resolved(key, TEMPLATE, RECORD, None), keys.shard_of(key), time.time()
    batch = [build_event("open", resolved, RequestFacts("192.0.2.1"), now) for _ in range(100)]
    events.append_many(batch, resolved=[resolved] * 100)
    entries = events.client.xrange(events.stream_of(shard))
    assert len({score_of(entry_id, shard) for entry_id, _ in entries}) == 100
    assert [event["timestamp"] for event in events.decoded(shard, entries)] == [
        batch[0]["timestamp"]] * 100


def test_append_many_stores_a_batch_with_its_indexes(events):
    batch = [build_event("open", Resolved(new_message_key(), TEMPLATE, RECORD, None),
                         RequestFacts("192.0.2.1"), 1700000001) for n in range(50)]
    events.append_many(batch)
    assert stored.count(events.client, events.prefix) == 50
    assert sum(events.client.zcard(events.index_key(shard, "open", "c", "c1"))
               for shard in keys.shard_ids()) == 50
    assert len({keys.shard_of(event["transmission_id"]) for event in batch}) > 10  # spread
    seventh = batch[7]["transmission_id"]
    assert events.client.zcard(events.index_key(keys.shard_of(seventh), "open", "x", seventh)) == 1


def test_score_is_time_ordered_and_iso_time_is_utc_ms():
    assert (score_of("1700000000000-0", 3) < score_of("1700000000000-1", 3)
            < score_of("1700000000000-0", 4) < score_of("1700000000001-0", 0))
    assert score_of("1700000000000-7", keys.LAYOUT1) == 1700000000000007  # layout 1's ids
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
