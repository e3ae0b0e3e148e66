"""Verdicts in the redirector (Flask test client, real Redis): every open and click carries
``engage``, nothing is dropped, and the per-message click state (bursts, trap hits) lives
in the link lookup's round trip, counted by Redis even under parallel requests."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from engage.store import keys, overrides
from engage.store.links import TRAP_LINK_NAME, Link, LinkStore, MessageRecord, Template, click_token, new_message_key
from engage.verdicts.judge import Judge, burst_key, trap_key
from engage.verdicts.machines import load, shipped_rules
from engage.verdicts.rules import Thresholds
from engage.web.app import GIF
from support import stored as kept
from support.webapp import API_KEY

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
PERSON = "203.0.113.10"


def stored(rclient) -> list[dict]:
    return kept.events(rclient, "engage:")


def get(client, path, ip=PERSON, ua=CHROME, method="GET"):
    return client.open(path, method=method, headers={"User-Agent": ua},
                       environ_base={"REMOTE_ADDR": ip})


def test_every_open_and_click_carries_a_verdict_and_nothing_is_dropped(client, mail, rclient):
    message = mail("https://example.com/a")
    assert get(client, f"/o/{message.open}").data == GIF
    assert get(client, f"/i/{message.open}").data == GIF
    assert get(client, f"/c/{message.click(0)}").status_code == 302
    events = stored(rclient)
    assert [e["type"] for e in events] == ["open", "initial_open", "click"]
    for event in events:
        assert list(event)[-1] == "engage"
        assert event["engage"] == {"verdict": "human", "reasons": []}


def test_head_click_is_a_scanner_and_still_redirected(client, mail, rclient):
    message = mail("https://example.com/a")
    reply = get(client, f"/c/{message.click(0)}", method="HEAD")
    assert reply.status_code == 302 and reply.headers["Location"] == "https://example.com/a"
    [event] = stored(rclient)
    assert event["engage"] == {"verdict": "scanner", "reasons": ["HEAD request"],
                               "signals": {"method": "HEAD"}}


def test_apple_mpp_pixel_is_privacy_proxy_and_the_gif_is_served(client, mail, rclient):
    message = mail("https://example.com/a")
    reply = get(client, f"/o/{message.open}", ip="17.58.63.12", ua="Mozilla/5.0")
    assert reply.status_code == 200 and reply.data == GIF
    [event] = stored(rclient)
    assert event["engage"]["verdict"] == "privacy_proxy"
    assert event["ip_address"] == "17.58.63.12" and event["user_agent"] == "Mozilla/5.0"


def test_a_click_seconds_after_injection_is_a_scanner(client, settings, rclient):
    store = LinkStore(rclient, settings.key_prefix)
    template = Template(links=(Link("https://example.com/fresh"),))
    key = new_message_key()
    store.register(key, template, MessageRecord(rcpt_to=("a@example.com",),
                                                injection_time=int(time.time()),
                                                template_id=template.template_id))
    get(client, f"/c/{click_token(key, template.template_id, 0)}")
    [event] = stored(rclient)
    assert event["engage"]["verdict"] == "scanner"
    assert event["engage"]["reasons"][0].startswith("clicked ")


def test_the_trap_link_marks_its_clicker_not_other_people(client, mail, rclient, settings):
    message = mail("https://example.com/a", "https://click.example.com/",
                   names=("", TRAP_LINK_NAME))
    scanner = "192.0.2.200"
    assert get(client, f"/c/{message.click(1)}", ip=scanner).status_code == 302
    assert 0 < rclient.ttl(trap_key(settings.key_prefix, message.key)) <= settings.trap_window
    get(client, f"/c/{message.click(0)}", ip=scanner)
    get(client, f"/c/{message.click(0)}", ip=PERSON)
    trap, follow, person = stored(rclient)
    assert trap["target_link_name"] == TRAP_LINK_NAME
    assert trap["engage"]["verdict"] == "scanner" and "trap link" in trap["engage"]["reasons"]
    assert follow["engage"]["verdict"] == "scanner"
    assert "same address clicked this message's trap link" in follow["engage"]["reasons"]
    assert follow["engage"]["signals"]["after_trap"] is True
    assert person["engage"]["verdict"] == "human"


def test_v1_broadcast_clicks_count_toward_the_burst(make_app, mail, rclient, settings):
    from engage.web.trackapi import sign
    key = "k" * 16
    client = make_app(url_signing_key=key).test_client()
    message = mail("https://example.com/a")
    second = int(time.time())
    for n in range(3):
        url = f"https://example.com/offer/{n}"
        get(client, f"/v1/track/click/{message.open}?url={url}&sig={sign(key, url, message.open)}")
    members = rclient.smembers(burst_key(settings.key_prefix, message.key, second)) or \
        rclient.smembers(burst_key(settings.key_prefix, message.key, second + 1))
    assert members and all(member.startswith(b"u") for member in members)


# ------------------------------------------------------------------ the click state itself
def judge_for(rclient, settings) -> Judge:
    return Judge(rclient, settings.key_prefix, load([shipped_rules()]), Thresholds(),
                 settings.trap_window)


def test_links_in_the_same_second_are_counted_by_link(mail, rclient, settings):
    message = mail("https://example.com/1", "https://example.com/2", "https://example.com/3")
    judge, store = judge_for(rclient, settings), LinkStore(rclient, settings.key_prefix)
    now = 1800000000.25
    counts = []
    for index in (0, 0, 1, 2):
        resolved = store.resolve(message.click(index), also=judge.click_state(now, PERSON))
        counts.append(judge.judge("click", "GET", PERSON, CHROME, resolved, now).facts.links_in_second)
    assert counts == [1, 1, 2, 3]
    resolved = store.resolve(message.click(0), also=judge.click_state(now + 1, PERSON))
    assert judge.judge("click", "GET", PERSON, CHROME, resolved, now + 1).facts.links_in_second == 1
    assert 0 < rclient.ttl(burst_key(settings.key_prefix, message.key, int(now))) <= 5


def test_parallel_clicks_of_a_scanner_each_see_the_others(mail, rclient, settings):
    """The count is made by Redis (SADD then SCARD in one pipeline), not read and written
    back by Python: eight simultaneous requests for eight links see 1..8, whatever the order."""
    message = mail(*[f"https://example.com/{n}" for n in range(8)])
    judge, store = judge_for(rclient, settings), LinkStore(rclient, settings.key_prefix)
    now = 1800000100.5

    def click(index: int) -> int:
        resolved = store.resolve(message.click(index), also=judge.click_state(now, PERSON))
        return judge.judge("click", "GET", PERSON, CHROME, resolved, now).facts.links_in_second

    with ThreadPoolExecutor(8) as pool:
        counts = sorted(pool.map(click, range(8)))
    assert counts == list(range(1, 9))


def test_an_unknown_token_leaves_only_short_lived_state(client, rclient):
    assert get(client, "/c/" + "A" * 29).status_code == 404
    keys = rclient.keys("engage:vb:*")
    assert all(0 < rclient.ttl(key) <= 5 for key in keys)
    assert not [key for key in rclient.keys("engage:*")
                if keys.family_of("engage:", key.decode()).name in ("status", "trap clients")]


def test_the_events_api_shows_an_override_with_the_raw_verdict(client, mail, rclient, settings):
    message = mail("https://example.com/a")
    get(client, f"/c/{message.click(0)}")
    get(client, f"/o/{message.open}")
    auth = {"Authorization": API_KEY}
    before = client.get("/api/v1/events/message", headers=auth).get_json()["results"]
    click = next(event for event in before if event["type"] == "click")
    override = {"verdict": "scanner", "reasons": ["user agent matches Example"],
                "raw_verdict": "human", "recomputed_at": "2030-01-01T00:00:00.000Z"}
    overrides.write(rclient, settings.key_prefix, keys.shard_of(message.key),
                    {click["event_id"]: override}, 86400)
    for query in ("", "?sending_domains=example.com"):  # an indexed page, then a scanned one
        after = client.get(f"/api/v1/events/message{query}", headers=auth).get_json()["results"]
        by_id = {event["event_id"]: event for event in after}
        assert by_id[click["event_id"]] == {**click, "engage": override}
        others = [event for event in after if event["event_id"] != click["event_id"]]
        assert others and all(event["engage"]["verdict"] == "human" for event in others)
