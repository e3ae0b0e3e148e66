"""The events API: auth, SparkPost parameters and filters, paging over thousands of events."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest

from engage.store import keys
from engage.store.events import RequestFacts, build_event, score_of
from engage.store.links import Link, MessageRecord, Resolved, Template
from engage.web.eventsapi import encode_cursor, parse_query, search
from support import stored

KEY = {"Authorization": "test-key-1-abcdefghijkl"}
API = "/api/v1/events/message"
CAMPAIGNS = ("spring", "summer", "autumn")
KINDS = ("click", "open", "initial_open")


def resolved(n: int, lead: str = "tx") -> Resolved:
    """Message n: campaign, recipient, subject and sending domain cycle with different periods."""
    template = Template(links=(Link(f"https://example.com/{n % 7}", "cta"),),
                        campaign_id=CAMPAIGNS[n % 3], tags=("t",), friendly_from="f@example.com",
                        sending_domain=("example.com", "Other.example")[n % 2])
    record = MessageRecord(rcpt_to=(f"User{n % 50}@Example.com",), subject=f"Subject {n % 4}",
                           message_id=f"<m{n}@example.com>", injection_time=1700000000,
                           template_id=template.template_id)
    return Resolved(f"{lead}{n:06d}", template, record, template.links[0])


def store(events, count: int, start: int = 0, lead: str = "tx") -> list[dict]:
    """``count`` events; their message keys start with ``lead``, so all are in its shard
    (engage.store.keys.shard_of reads a key's first four characters)."""
    stored = []
    for n in range(start, start + count):
        kind, res = KINDS[n % 3], resolved(n, lead)
        if kind != "click":
            res = Resolved(res.message_key, res.template, res.record, None)
        event = build_event(kind, res, RequestFacts("192.0.2.1", "UA"), time.time())
        event["event_id"] = str(score_of(events.append(event), keys.shard_of(res.message_key)))
        stored.append(event)
    return stored


def get(client, **params):
    return client.get(f"{API}?{urlencode(params)}", headers=KEY)


def all_pages(client, **params):
    response = get(client, **params)
    pages = [response.json]
    while pages[-1]["links"].get("next"):
        response = client.get(pages[-1]["links"]["next"], headers=KEY)
        assert response.status_code == 200
        pages.append(response.json)
    return pages


@pytest.fixture
def thousands(events):
    return store(events, 2000)


def test_missing_or_wrong_key_is_401_json(make_app):
    client = make_app(api_keys=("k1", "k2")).test_client()
    for headers in ({}, {"Authorization": "k3"}, {"Authorization": ""}, {"Authorization": "k1k2"}):
        response = client.get(API, headers=headers)
        assert response.status_code == 401 and response.is_json
        assert response.json["errors"][0]["message"] == "Unauthorized."
    assert client.get(API, headers={"Authorization": "k2"}).status_code == 200


def test_no_keys_configured_means_no_access(make_app):
    client = make_app(api_keys=()).test_client()
    assert client.get(API, headers={"Authorization": ""}).status_code == 401


def test_paging_over_thousands_newest_first(client, thousands):
    pages = all_pages(client, per_page=1000)
    assert [len(page["results"]) for page in pages] == [1000, 1000]
    assert {page["total_count"] for page in pages} == {2000}
    ids = [int(event["event_id"]) for page in pages for event in page["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 2000
    assert pages[-1]["links"] == {}
    first = pages[0]["results"][0]
    assert first == thousands[-1]  # the stored object comes back unchanged


def test_default_per_page_is_1000_and_max_is_10000(client, thousands):
    assert len(get(client).json["results"]) == 1000
    assert len(get(client, per_page=10000).json["results"]) == 2000


def expected(stored, **filters):
    def keep(event):
        return all(event[field] in values for field, values in filters.items())
    return sorted((int(e["event_id"]) for e in stored if keep(e)), reverse=True)


@pytest.mark.parametrize("params, filters", [
    ({"events": "click"}, {"type": {"click"}}),
    ({"events": "open,initial_open"}, {"type": {"open", "initial_open"}}),
    ({"campaigns": "spring,autumn"}, {"campaign_id": {"spring", "autumn"}}),
    ({"recipients": "USER7@example.COM"}, {"rcpt_to": {"user7@example.com"}}),
    ({"messages": "<m10@example.com>,<m11@example.com>"},
     {"message_id": {"<m10@example.com>", "<m11@example.com>"}}),
    ({"transmissions": "tx000042"}, {"transmission_id": {"tx000042"}}),
    ({"subjects": "Subject 1"}, {"subject": {"Subject 1"}}),
    ({"sending_domains": "other.example"}, {"sending_domain": {"Other.example"}}),
    ({"events": "click", "campaigns": "summer"}, {"type": {"click"}, "campaign_id": {"summer"}}),
    ({"campaigns": "spring", "recipients": "user3@example.com"},
     {"campaign_id": {"spring"}, "rcpt_to": {"user3@example.com"}}),
    ({"subjects": "Subject 2", "sending_domains": "example.com", "events": "open"},
     {"subject": {"Subject 2"}, "sending_domain": {"example.com"}, "type": {"open"}}),
    ({"transmissions": "tx000042,tx000043", "events": "click"},  # a message's index holds
     {"transmission_id": {"tx000042", "tx000043"}, "type": {"click"}}),  # every type
    ({"messages": "<m10@example.com>,<m11@example.com>,<m12@example.com>", "events": "open"},
     {"message_id": {"<m10@example.com>", "<m11@example.com>", "<m12@example.com>"},
      "type": {"open"}}),
    ({"campaigns": "nope"}, {"campaign_id": {"nope"}}),
    ({"events": "delivery,bounce"}, {"type": {"delivery"}}),
])
def test_filters_match_exactly_what_they_name(client, thousands, params, filters):
    want = expected(thousands, **filters)
    pages = all_pages(client, per_page=97, **params)
    got = [int(event["event_id"]) for page in pages for event in page["results"]]
    assert got == want
    assert pages[0]["total_count"] == len(want)


def test_next_link_keeps_the_filters(client, thousands):
    page = get(client, per_page=10, campaigns="spring", events="click").json
    assert "campaigns=spring" in page["links"]["next"] and "events=click" in page["links"]["next"]
    assert page["links"]["next"].startswith(API + "?")


def test_from_and_to_select_a_time_window(client, events):
    before = store(events, 30)
    time.sleep(0.02)
    after = store(events, 20, start=30)
    # Bounds from the stored ids (Redis's clock, in ms), not from this process's clock.
    last_before = max(int(e["event_id"]) for e in before) // 1000
    first_after = min(int(e["event_id"]) for e in after) // 1000
    assert first_after > last_before

    def iso(ms: int) -> str:
        moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    newer = get(client, **{"from": iso(first_after)}).json
    assert newer["total_count"] == 20
    assert {e["event_id"] for e in newer["results"]} == {e["event_id"] for e in after}
    older = get(client, to=iso(last_before + 1)).json  # "to" is exclusive
    assert {e["event_id"] for e in older["results"]} == {e["event_id"] for e in before}
    long_ago = {"from": "2000-01-01T00:00", "to": "2000-01-02T00:00"}
    assert get(client, **long_ago).json["total_count"] == 0


@pytest.mark.parametrize("params, param", [
    ({"per_page": "0"}, "per_page"), ({"per_page": "10001"}, "per_page"),
    ({"per_page": "ten"}, "per_page"), ({"from": "yesterday"}, "from"),
    ({"to": "2024-13-01T00:00:00Z"}, "to"),
    ({"from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, "from"),
    ({"cursor": "garbage"}, "cursor"), ({"cursor": encode_cursor(5)[:-2] + "!!"}, "cursor"),
    ({"campaign": "typo"}, "campaign"), ({"events": "clicks"}, "events"),
    ({"campaigns": ","}, "campaigns"), ({"delimiter": "ab"}, "delimiter"),
])
def test_bad_parameters_are_400_naming_the_parameter(client, params, param):
    response = get(client, **params)
    assert response.status_code == 400 and response.is_json
    assert response.json["errors"][0]["param"] == param


def test_custom_delimiter(client, thousands):
    got = get(client, campaigns="spring;summer", delimiter=";", per_page=10000).json
    assert got["total_count"] == len(expected(thousands, campaign_id={"spring", "summer"}))


def test_a_scan_that_would_be_too_large_is_refused(make_app, thousands):
    client = make_app(api_max_scan=100).test_client()
    response = get(client, sending_domains="example.com")
    assert response.status_code == 400
    assert response.json["errors"][0]["param"] == "sending_domains"
    assert get(client, sending_domains="example.com", transmissions="tx000001").status_code == 200


def test_the_api_answers_503_json_when_redis_is_down(client, web_redis):
    web_redis.stop()
    try:
        response = get(client)
        assert response.status_code == 503 and response.is_json
    finally:
        web_redis.start()


def test_an_event_of_the_query_s_own_millisecond_is_found(events):
    """Without ``to`` the window ends after the current ms, however early in it the
    query comes (an event stored a moment before, in the same ms)."""
    moment = int(time.time() * 1000) / 1000 + 0.0001  # the start of a ms
    res = resolved(1)
    event = build_event("click", res, RequestFacts("192.0.2.1", "UA"), moment)
    events.append(event, resolved=res)
    found = search(events, parse_query({}, now=moment), 10_000, now=moment)
    assert found.total_count == 1 and b'"type":"click"' in found.results


def test_default_window_is_the_last_24_hours():
    query = parse_query({}, now=1_000_000.0)
    assert (query.start_ms, query.end_ms) == ((1_000_000 - 86400) * 1000, 1_000_000_001)


def test_retention_hides_and_trims_old_events_but_links_still_resolve(events, mail, client):
    message = mail("https://example.com/kept")
    client.get(f"/c/{message.click(0)}")
    shard = keys.shard_of(message.key)
    store(events, 400, lead=message.key[:4])
    later = time.time() + 11 * 86400
    query = parse_query({}, now=later)
    query = type(query)(0, query.end_ms)
    assert search(events, query, 10_000, now=later).total_count == 0
    for link in (None, message.links[0]):  # an index is trimmed with the stream when written
        kind = "click" if link else "open"
        index = events.index_key(shard, kind)
        assert events.client.type(index) == b"stream"  # past 128 entries
        assert events.client.xlen(index) > 128
        event = build_event(kind, Resolved(message.key, message.template, message.record, link),
                            RequestFacts("192.0.2.1"), later)
        for _ in range(3000):  # 11 days on, everything stored so far is too old
            events.append(event, now=later)
            if events.client.xlen(index) < 100:  # MINID drops whole nodes of 100 entries
                break
        assert events.client.xlen(index) < 100
    assert stored.count(events.client, events.prefix) < 400  # MINID trimmed whole stream nodes
    assert 0 < events.client.ttl(events.index_key(shard, "open", "c", "summer")) <= 11 * 86400
    assert client.get(f"/c/{message.click(0)}").headers["Location"] == "https://example.com/kept"
