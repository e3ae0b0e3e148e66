"""engage.erasure.scrub, pure: finding one address in stored text (any case, percent-encoded,
JSON-escaped, never inside a longer address) and the rewritten records, templates and
webhook bodies. On a real Redis: tests/erasure/test_forget.py."""
from __future__ import annotations

import json

import pytest

from engage.erasure.scrub import Address, filter_body, scrub_batch, scrub_record, scrub_template
from engage.store.links import Link, MessageRecord, Template

JANE = Address.parse("Jane.Roe+news@Example.ORG")


def test_parse_lowercases_strips_brackets_and_refuses_what_is_not_an_address():
    assert Address.parse(" <Jane@Example.ORG> ").text == "jane@example.org"
    for bad in ("", "jane", "@example.org", "jane@", "jane doe@example.org", "a\n@b.c",
                "x" * 320 + "@example.org"):
        with pytest.raises(ValueError):
            Address.parse(bad)


@pytest.mark.parametrize("text", [
    "jane.roe+news@example.org",
    "JANE.ROE+NEWS@EXAMPLE.ORG",
    "To: Jane <Jane.Roe+news@Example.org>",
    '{"rcpt_to":"jane.roe+news@example.org"}',
    "https://shop.example/unsub?u=jane.roe%2Bnews%40example.org&x=1",
    "https://shop.example/unsub?u=Jane.Roe+news%40Example.org",
    "https://shop.example/u/%3Cjane.roe%2bnews%40example.org%3E",
    "end of sentence jane.roe+news@example.org.",
    "mailto:jane.roe+news@example.org?subject=x",
])
def test_mentions_in_every_stored_form_and_case(text):
    assert JANE.mentions(text) and JANE.mentions(text.encode())
    assert not JANE.mentions(JANE.cut(text))


@pytest.mark.parametrize("text", [
    "mary.jane.roe+news@example.org",
    "xjane.roe+news@example.org",
    "jane.roe+news@example.org.uk",
    "jane.roe+news@example.organic",
    "jane.roe+news@example-org.net",
    "jane.roe@example.org",
    "bob@example.org",
])
def test_a_longer_or_other_address_is_not_the_address(text):
    assert not JANE.mentions(text)
    assert JANE.cut(text) == text


def test_json_escaped_and_idna_forms_of_a_non_ascii_address():
    address = Address.parse("Jérôme@Bücher.example")
    assert address.mentions(json.dumps({"r": "jérôme@bücher.example"}))  # \u escapes
    assert address.mentions("jérôme@xn--bcher-kva.example")
    assert address.mentions("u=j%C3%A9r%C3%B4me%40b%C3%BCcher.example")
    assert all(needle == needle.lower() for needle in address.needles)


def record(rcpts, **fields):
    return MessageRecord(rcpt_to=tuple(rcpts), mail_from="bounce-jane.roe+news=example.org@shop.example",
                         subject=fields.get("subject", "Hello Jane"), message_id="<1@shop.example>",
                         queue_id="4XyZ1", injection_time=1700000000,
                         metadata=fields.get("metadata", {"user": 7}), template_id="T" * 12).to_text()


def test_the_recipients_own_record_keeps_only_what_its_links_need():
    scrubbed = scrub_record(record(["Jane.Roe+news@Example.ORG"]), JANE)
    assert scrubbed is not None and not JANE.mentions(scrubbed)
    assert MessageRecord.from_text(scrubbed) == MessageRecord(
        injection_time=1700000000, template_id="T" * 12)


def test_a_multi_recipient_record_loses_the_address_subject_and_metadata_only():
    scrubbed = scrub_record(record(["bob@example.net", "JANE.ROE+NEWS@example.org"]), JANE)
    kept = MessageRecord.from_text(scrubbed)
    assert kept.rcpt_to == ("bob@example.net", "")  # still two: a click is not Bob's alone
    assert (kept.subject, kept.metadata) == ("", {})
    assert kept.message_id == "<1@shop.example>" and kept.queue_id == "4XyZ1"
    assert kept.template_id == "T" * 12


def test_another_recipients_record_only_loses_the_mention():
    raw = record(["bob@example.net"], subject="Invited by jane.roe+news@example.org",
                 metadata={"referrer": "Jane.Roe+news@example.org", "n": 1})
    kept = MessageRecord.from_text(scrub_record(raw, JANE))
    assert kept.rcpt_to == ("bob@example.net",) and kept.subject == "Invited by "
    assert kept.metadata == {"referrer": "", "n": 1}
    assert scrub_record(record(["bob@example.net"]), JANE) is None  # no mention: untouched


def test_a_template_keeps_every_link_with_the_address_cut_out():
    template = Template(links=(Link("https://shop.example/a"),
                               Link("https://shop.example/unsub?u=jane.roe%2Bnews%40example.org", "unsub"),
                               Link("https://shop.example/p?e=Jane.Roe+news@Example.org&x=1")),
                        campaign_id="spring", friendly_from="news@shop.example")
    scrubbed = Template.from_json(scrub_template(template.to_json(), JANE))
    assert [link.url for link in scrubbed.links] == [
        "https://shop.example/a", "https://shop.example/unsub?u=", "https://shop.example/p?e=&x=1"]
    assert scrubbed.links[1].name == "unsub" and scrubbed.campaign_id == "spring"
    assert scrub_template(Template(links=(Link("https://shop.example/a"),)).to_json(), JANE) is None


def sparkpost_item(rcpt: str, n: int) -> dict:
    return {"msys": {"track_event": {"type": "click", "event_id": str(n), "rcpt_to": rcpt}}}


def test_webhook_bodies_lose_the_events_that_mention_the_address():
    body = json.dumps([sparkpost_item("bob@example.net", 1), sparkpost_item("jane.roe+news@example.org", 2),
                       sparkpost_item("carol@example.com", 3)])
    new, kept, removed = filter_body(body, JANE)
    assert (kept, removed) == (2, 1)
    assert [i["msys"]["track_event"]["event_id"] for i in json.loads(new)] == ["1", "3"]
    single = json.dumps({"type": "email.clicked", "data": {"recipient": "Jane.Roe+news@example.org"}})
    assert filter_body(single, JANE)[1:] == (0, 1)
    other = json.dumps({"type": "email.clicked", "data": {"recipient": "bob@example.net"}})
    assert json.loads(filter_body(other, JANE)[0]) == json.loads(other)


def test_a_replayed_batch_record_is_rewritten_or_dropped():
    two = json.dumps([sparkpost_item("bob@example.net", 1), sparkpost_item("jane.roe+news@example.org", 2)])
    raw = json.dumps({"ids": "", "size": 2, "created": 1, "attempts": 0, "lease": "", "code": 0,
                      "body": two})
    new, removed = scrub_batch(raw, JANE)
    assert removed == 1 and new is not None and not JANE.mentions(new)
    assert json.loads(new)["size"] == 1
    only = json.dumps({"ids": "", "size": 1, "body": json.dumps([sparkpost_item("jane.roe+news@example.org", 2)])})
    assert scrub_batch(only, JANE) == (None, 1)
    untouched = json.dumps({"ids": "1-0 2-0", "size": 2})
    assert scrub_batch(untouched, JANE) == (untouched, 0)
