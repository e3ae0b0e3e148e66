"""Every SparkPost events-search parameter, the events docs and samples, the metrics lists,
SparkPost's error objects: what a SparkPost client sends gets SparkPost's answer."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from engage.store import keys
from engage.store.events import RequestFacts, build_event, score_of
from engage.store.links import Link, LinkStore, MessageRecord, Resolved, Template, new_message_key
from engage.web.eventsapi import NEVER_PARAMS, keyword_match
from support.webapp import API_KEY

KEY = {"Authorization": API_KEY}
API = "/api/v1/events/message"
NEW_YORK = ZoneInfo("America/New_York")


def add(events, n: int, kind: str = "click", rcpt: tuple[str, ...] = ("a@example.com",),
        sender: str = "news@example.com", ip: str = "192.0.2.1", campaign: str = "spring",
        domain: str = "example.com") -> dict:
    template = Template(links=(Link(f"https://shop.example/{n}", "cta"),), campaign_id=campaign,
                        friendly_from=sender, sending_domain=domain)
    record = MessageRecord(rcpt_to=rcpt, subject=f"s{n}", message_id=f"<m{n}@example.com>",
                           injection_time=1700000000, template_id=template.template_id)
    resolved = Resolved(f"tx{n}", template, record, template.links[0] if kind == "click" else None)
    event = build_event(kind, resolved, RequestFacts(ip, "UA"), time.time())
    event["event_id"] = str(score_of(events.append(event), keys.shard_of(f"tx{n}")))
    return event


def get(client, **params):
    return client.get(f"{API}?{urlencode(params)}", headers=KEY)


def ids(response) -> set[str]:
    assert response.status_code == 200, response.json
    return {event["event_id"] for event in response.json["results"]}


def local(moment: datetime, zone) -> str:
    """SparkPost's documented form, without offset: YYYY-MM-DDTHH:MM in ``zone``."""
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def test_timezone_says_how_from_and_to_without_offset_are_read(client, events):
    stored = {add(events, n)["event_id"] for n in range(3)}
    now = datetime.now(timezone.utc)
    window = {"from": local(now - timedelta(minutes=30), NEW_YORK),
              "to": local(now + timedelta(minutes=30), NEW_YORK)}
    assert ids(get(client, timezone="America/New_York", **window)) == stored
    # The same wall-clock times read as UTC are hours away from now: nothing.
    assert ids(get(client, **window)) == set()
    # An explicit offset wins over timezone.
    explicit = {"from": (now - timedelta(minutes=30)).isoformat(),
                "to": (now + timedelta(minutes=30)).isoformat()}
    assert ids(get(client, timezone="Asia/Tokyo", **explicit)) == stored


def test_recipient_domains_by_domain_segment_and_across_recipients(client, events):
    plain = add(events, 1, rcpt=("Ann@Example.com",))
    sub = add(events, 2, rcpt=("bob@mail.example.com",))
    other = add(events, 3, rcpt=("cy@example.org",))
    several = add(events, 4, kind="open", rcpt=("d@other.test", "e@Example.COM"))
    assert ids(get(client, recipient_domains="example.com")) == {
        plain["event_id"], sub["event_id"], several["event_id"]}
    assert ids(get(client, recipient_domains="mail.example.com")) == {sub["event_id"]}
    assert ids(get(client, recipient_domains="example")) == {
        plain["event_id"], sub["event_id"], other["event_id"], several["event_id"]}
    assert ids(get(client, recipient_domains="ample.com")) == set()
    assert ids(get(client, recipient_domains="other.test,example.org")) == {
        other["event_id"], several["event_id"]}
    assert keyword_match("example.com", "example.com") and not keyword_match("com.example", "example.com")


def test_from_addresses_ip_addresses_and_sending_domains(client, events):
    first = add(events, 1, sender="News@Shop.example", ip="198.51.100.7", domain="shop.example")
    second = add(events, 2, sender="hi@example.com", ip="203.0.113.9")
    assert ids(get(client, from_addresses="news@shop.example")) == {first["event_id"]}
    assert ids(get(client, ip_addresses="203.0.113.9,192.0.2.200")) == {second["event_id"]}
    assert ids(get(client, sending_domains="shop")) == {first["event_id"]}


def test_event_ids_are_read_by_id_with_the_other_filters_and_paged(client, events):
    stored = [add(events, n, kind=("click", "open")[n % 2]) for n in range(12)]
    wanted = [e["event_id"] for e in stored[::2]]  # the clicks
    assert ids(get(client, event_ids=",".join(wanted))) == set(wanted)
    assert ids(get(client, event_ids=",".join(wanted), events="open")) == set()
    assert ids(get(client, event_ids=f"{stored[1]['event_id']},1", events="open")) == {
        stored[1]["event_id"]}
    first = get(client, event_ids=",".join(wanted), per_page=4).json
    assert first["total_count"] == 6 and len(first["results"]) == 4
    second = client.get(first["links"]["next"], headers=KEY).json
    assert second["total_count"] == 6 and "next" not in second["links"]
    walked = [e["event_id"] for page in (first, second) for e in page["results"]]
    assert walked == sorted(wanted, key=int, reverse=True)
    long_ago = {"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"}
    assert ids(get(client, event_ids=wanted[0], **long_ago)) == set()
    bad = get(client, event_ids="12ab")
    assert bad.status_code == 400 and bad.json["errors"][0]["param"] == "event_ids"


@pytest.mark.parametrize("param", NEVER_PARAMS)
def test_filters_on_what_engage_never_records_match_nothing(client, events, param):
    add(events, 1)
    params = {param: "10", "ab_tests": "t"} if param == "ab_test_versions" else {param: "10"}
    response = get(client, **params)
    assert response.status_code == 200
    assert response.json == {"results": [], "total_count": 0, "links": {}}


def test_never_filters_are_still_validated_with_sparkpost_codes(client):
    numeric = get(client, bounce_classes="soft")
    assert numeric.status_code == 400
    assert numeric.json["errors"][0] == {"message": "invalid parameter", "code": "1200",
                                         "description": "must list whole numbers",
                                         "param": "bounce_classes"}
    missing = get(client, ab_test_versions="2")
    assert missing.status_code == 400
    assert missing.json["errors"][0]["code"] == "1400"
    assert missing.json["errors"][0]["param"] == "ab_tests"
    assert get(client, timezone="Mars/Olympus").json["errors"][0]["param"] == "timezone"
    unauthorized = client.get(API)
    assert unauthorized.status_code == 401 and unauthorized.json["errors"][0]["code"] == "1100"


def test_total_count_holds_over_a_walk_while_new_events_arrive(client, events):
    stored = [add(events, n) for n in range(25)]
    page = get(client, per_page=10).json  # no "to": the window ends now
    totals, seen = [page["total_count"]], [e["event_id"] for e in page["results"]]
    while "next" in page["links"]:
        add(events, 100 + len(seen))  # newer than the walk's window: not part of it
        page = client.get(page["links"]["next"], headers=KEY).json
        totals.append(page["total_count"])
        seen += [e["event_id"] for e in page["results"]]
    assert totals == [25, 25, 25]
    # Newest first by event_id (events of one millisecond: by shard, not arrival).
    assert seen == sorted((e["event_id"] for e in stored), key=int, reverse=True)
    assert get(client, per_page=10).json["total_count"] == 25 + 2  # a new walk sees them


def test_old_cursors_still_work(client, events):
    from engage.web.eventsapi import encode_cursor
    stored = [add(events, n) for n in range(3)]
    response = get(client, cursor=encode_cursor(int(stored[2]["event_id"])))
    assert ids(response) == {stored[0]["event_id"], stored[1]["event_id"]}


def test_documentation_and_samples_in_sparkpost_shapes(client, events):
    docs = client.get(f"{API}/documentation", headers=KEY)
    assert docs.status_code == 200
    by_type = {entry["type"]["sampleValue"]: entry for entry in docs.json["results"]}
    assert set(by_type) == {"click", "open", "initial_open"}
    for entry in docs.json["results"]:
        for name, field in entry.items():
            assert set(field) == {"description", "sampleValue"} and field["description"], name
    real = add(events, 1)
    assert set(by_type["click"]) == set(real) | {"geo_ip", "engage"}
    samples = client.get(f"{API}/samples?events=click,bounce", headers=KEY)
    assert samples.status_code == 200
    (click,) = samples.json["results"]
    assert list(click) == list(by_type["click"])
    assert click["type"] == "click" and click["target_link_url"] == "http://example.com"
    assert [s["type"] for s in client.get(f"{API}/samples", headers=KEY).json["results"]] == [
        "click", "open", "initial_open"]
    bad = client.get(f"{API}/samples?events=clicks", headers=KEY)
    assert bad.status_code == 400 and bad.json["errors"][0]["code"] == "1200"
    assert client.get(f"{API}/documentation").status_code == 401


# ----------------------------------------------------------------------------- metrics lists

METRICS = "/api/v1/metrics"


@pytest.fixture
def sent(rclient, settings):
    """Messages sent an hour ago and now: campaigns, sending domains, recipient domains."""
    store = LinkStore(rclient, settings.key_prefix)
    now = int(time.time())

    def send(campaign: str, domain: str, rcpt: tuple[str, ...], when: int) -> None:
        template = Template(campaign_id=campaign, sending_domain=domain, friendly_from=f"x@{domain}")
        store.register(new_message_key(), template, MessageRecord(
            rcpt_to=rcpt, injection_time=when, template_id=template.template_id))

    send("Labor Day Sale", "example1.com", ("a@Gmail.com", "b@yahoo.com"), now - 3600)
    send("Winter Event", "example2.com", ("c@aol.com",), now)
    send("winter-event-001", "example2.com", ("d@gmail.com",), now)
    return now


def lists(client, name, **params):
    response = client.get(f"{METRICS}/{name}?{urlencode(params)}", headers=KEY)
    assert response.status_code == 200, response.json
    assert list(response.json) == ["results"] and list(response.json["results"]) == [name]
    return response.json["results"][name]


def test_metrics_lists_in_sparkpost_shape(client, sent):
    assert lists(client, "campaigns") == ["Labor Day Sale", "Winter Event", "winter-event-001"]
    assert lists(client, "sending-domains") == ["example1.com", "example2.com"]
    assert lists(client, "domains") == ["aol.com", "gmail.com", "yahoo.com"]
    assert lists(client, "campaigns", match="WINTER") == ["Winter Event", "winter-event-001"]
    assert lists(client, "campaigns", limit=1) == ["Labor Day Sale"]
    this_hour = datetime.fromtimestamp(sent // 3600 * 3600, timezone.utc)
    assert lists(client, "campaigns", **{"from": local(this_hour, NEW_YORK),
                                         "timezone": "America/New_York"}) == [
        "Winter Event", "winter-event-001"]
    assert lists(client, "domains", **{"from": local(this_hour, timezone.utc)}) == [
        "aol.com", "gmail.com"]
    for name in ("templates", "ip-pools", "sending-ips", "mailbox-providers",
                 "mailbox-provider-regions", "subject-campaigns"):
        assert lists(client, name) == []


def test_metrics_lists_errors_and_root(client, sent):
    bad = client.get(f"{METRICS}/campaigns?limit=0", headers=KEY)
    assert bad.status_code == 400 and bad.json["errors"][0]["code"] == "1200"
    assert bad.json["errors"][0]["param"] == "limit"
    assert client.get(f"{METRICS}/campaigns?metrics=x", headers=KEY).status_code == 400
    assert client.get(f"{METRICS}/campaigns").status_code == 401
    root = client.get(f"{METRICS}/", headers=KEY).json
    assert root["results"] == {}
    hrefs = {link["href"] for link in root["links"]}
    assert {f"{METRICS}/campaigns", f"{METRICS}/deliverability", f"{METRICS}/domains"} <= hrefs
    for href in hrefs - {f"{METRICS}/deliverability"}:
        assert client.get(href, headers=KEY).status_code == 200, href
