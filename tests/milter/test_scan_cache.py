"""ScanCache: a body scanned once serves later messages with exactly the plan an
uncached scan gives them, and never a plan made for a different input."""
from dataclasses import replace
from pathlib import Path

import pytest

from engage.settings import Settings
from engage_milter.plan import Envelope, ScanCache, plan_message
from newsletter import newsletter
from oracle import milter_view

DATA = Path(__file__).resolve().parents[1] / "data"
SETTINGS = Settings(tracking_url="https://t.example")
FIXTURES = sorted(DATA.glob("*.eml"))
NEWSLETTERS = {"newsletter-8bit": newsletter(), "newsletter-qp": newsletter(quoted_printable=True)}


def plan(raw: bytes, key: str, cache: ScanCache, settings: Settings = SETTINGS):
    headers, body = milter_view(raw)
    envelope = Envelope("b@shop.example", ("r@example.net",), "Q" + key[:4], 1)
    return plan_message(headers, body, envelope, settings, key * 16, cache=cache)


def same(a, b) -> bool:
    return (a.body, a.template, a.record, a.notes, a.delete_headers, a.reject) == \
           (b.body, b.template, b.record, b.notes, b.delete_headers, b.reject)


@pytest.mark.parametrize("raw", [path.read_bytes() for path in FIXTURES] + list(NEWSLETTERS.values()),
                         ids=[path.stem for path in FIXTURES] + list(NEWSLETTERS))
def test_cached_plans_equal_uncached_ones_for_every_fixture(raw):
    cache = ScanCache(4)
    for key in "ABC":
        assert same(plan(raw, key, cache), plan(raw, key, ScanCache(0)))
    tracked = plan(raw, "A", cache)
    assert len(cache._entries) == (1 if tracked.body is not None else len(cache._entries))


def test_each_message_keeps_its_own_tokens():
    cache = ScanCache(4)
    first, second = plan(NEWSLETTERS["newsletter-8bit"], "A", cache), plan(NEWSLETTERS["newsletter-8bit"], "B", cache)
    assert first.body != second.body and "A" * 16 in first.body.decode() and "A" * 16 not in second.body.decode()
    assert len(cache._entries) == 1


def test_campaigns_sharing_a_body_get_their_own_templates():
    cache = ScanCache(4)
    raw = NEWSLETTERS["newsletter-8bit"]
    assert b"campaign_id" in raw
    renamed = raw.replace(b'"campaign_id": "', b'"campaign_id": "other-', 1)
    plans = [plan(raw, "A", cache), plan(renamed, "A", cache)]
    assert plans[0].template.campaign_id != plans[1].template.campaign_id
    assert plans[0].template.template_id != plans[1].template.template_id
    assert same(plans[1], plan(renamed, "A", ScanCache(0)))
    assert len(cache._entries) == 1


def test_the_same_body_under_other_mime_headers_is_scanned_again():
    """The charset comes from the headers: latin-1 and UTF-8 readings of one body differ."""
    raw = (b"From: a@shop.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b'<a href="https://shop.example/p" data-msys-linkname="caf\xc3\xa9">p</a>\r\n')
    latin = raw.replace(b"charset=utf-8", b"charset=iso-8859-1")
    cache = ScanCache(4)
    utf8_plan, latin_plan = plan(raw, "A", cache), plan(latin, "A", cache)
    assert utf8_plan.template.links[0].name == "café" and latin_plan.template.links[0].name == "cafÃ©"
    assert len(cache._entries) == 2 and same(latin_plan, plan(latin, "A", ScanCache(0)))


def test_other_tracking_options_are_scanned_again():
    cache = ScanCache(4)
    raw = NEWSLETTERS["newsletter-8bit"]
    no_text = replace(SETTINGS, track_text_links=False)
    with_text, without = plan(raw, "A", cache), plan(raw, "A", cache, no_text)
    assert len(without.template.links) < len(with_text.template.links)
    assert same(without, plan(raw, "A", ScanCache(0), no_text)) and len(cache._entries) == 2


def test_least_recently_used_bodies_leave_first_and_size_zero_keeps_none():
    cache = ScanCache(2)
    bodies = [newsletter(links=n) for n in (3, 4, 5)]
    for raw in (bodies[0], bodies[1], bodies[0], bodies[2]):
        plan(raw, "A", cache)
    kept = {key[0] for key in cache._entries}
    assert kept == {milter_view(bodies[0])[1], milter_view(bodies[2])[1]}
    off = ScanCache(0)
    plan(bodies[0], "A", off)
    assert not off._entries
