"""SparkPost's ``/api/v1/events/message/documentation`` and ``/samples`` for our events.

Samples are built by ``engage.store.events.build_event`` itself from a made-up message, so
a sample always has exactly the fields a stored event has, in their order. The
documentation describes each field of each event type as SparkPost does: ``{"results":
[{<field>: {"description", "sampleValue"}, ...}, ...]}``, one object per event type.
Types SparkPost has and engage never produces have no sample and no documentation.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engage.store.events import TYPES
from engage.store.links import Resolved
from engage.store.records import Link, MessageRecord, Template
from engage.store.trackevent import RequestFacts, build_event

SAMPLE_TIME = 1_460_989_507.0  # SparkPost's sample timestamp, 2016-04-18T14:25:07Z
SAMPLE_IDS = {"click": "92356927693813856", "open": "92356927693813857",
              "initial_open": "92356927693813858"}
DESCRIPTIONS = {
    "event_id": "Unique event identifier; sorts by time",
    "type": "Type of event this record describes",
    "timestamp": "Event date and time, in UTC, ISO 8601",
    "message_id": "Message-ID header of the message",
    "transmission_id": "Identifier of the message within engage (one per message registered)",
    "campaign_id": "Campaign of which this message was a part (X-MSYS-API campaign_id)",
    "rcpt_to": "Lowercase version of the recipient address used on this message's SMTP "
               "envelope (absent when the message had several recipients)",
    "raw_rcpt_to": "Actual recipient address used on this message's SMTP envelope",
    "recipient_domain": "Domain of the recipient address",
    "rcpt_to_list": "Every envelope recipient, lowercased, when the message had several "
                    "(engage's addition: one message, one set of links)",
    "rcpt_meta": "Metadata describing the message recipient (X-MSYS-API metadata)",
    "rcpt_tags": "Tags applied to the message (X-MSYS-API tags)",
    "friendly_from": "Address of the From header of the message",
    "msg_from": "Sender address used on this message's SMTP envelope",
    "subject": "Subject line from the email header",
    "sending_domain": "Domain of the From header",
    "injection_time": "When the message passed engage-milter, in UTC, ISO 8601",
    "open_tracking": "Whether open tracking was enabled for this message",
    "click_tracking": "Whether click tracking was enabled for this message",
    "initial_pixel": "Whether the message carried the initial (top) open pixel",
    "ip_address": "IP address of the host to which the pixel or link was served",
    "user_agent": "User-Agent header of the request",
    "queue_id": "The MTA's queue id of the message (engage's addition)",
    "email_id": "The message's id in the /v1/track API family (engage's addition)",
    "target_link_url": "URL of the link the recipient clicked",
    "target_link_name": "Name of the link (data-msys-linkname), if any",
    "accept_language": "Accept-Language header of the click request",
    "referer": "Referer header of the click request (engage's addition)",
    "geo_ip": "Geographic location of the IP address, when a GeoIP database is configured",
    "engage": "engage's verdict on who opened or clicked: human, scanner, proxy ... with "
              "its reasons (engage's addition)",
}


def sample(kind: str) -> dict[str, Any]:
    """One made-up event of ``kind`` (click, open, initial_open), as the API returns it."""
    template = Template(links=(Link("http://example.com", "Example Link Name"),),
                        campaign_id="Example Campaign Name", tags=("male", "US"),
                        friendly_from="sender@example.com", sending_domain="example.com")
    record = MessageRecord(rcpt_to=("recipient@example.com",), mail_from="sender@example.com",
                           subject="Summer deals are here!",
                           message_id="<000443ee14578172be22@example.com>",
                           queue_id="4Vx2Kq0Zb1z9", injection_time=int(SAMPLE_TIME) - 60,
                           metadata={"customKey": "customValue"},
                           template_id=template.template_id)
    resolved = Resolved("65832150921904138", template, record,
                        template.links[0] if kind == "click" else None)
    facts = RequestFacts("127.0.0.1", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_3) "
                         "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2272.118 "
                         "Safari/537.36", "en-US,en;q=0.8",
                         {"country": "US", "region": "MD", "city": "Columbia",
                          "latitude": 39.1749, "longitude": -76.8375},
                         "https://mail.example.com/")
    event = build_event(kind, resolved, facts, SAMPLE_TIME,
                        {"verdict": "human", "reasons": []})
    return {"event_id": SAMPLE_IDS[kind], **event}


def samples(kinds: Iterable[str] = TYPES) -> list[dict[str, Any]]:
    return [sample(kind) for kind in TYPES if kind in set(kinds)]


def documentation() -> list[dict[str, dict[str, Any]]]:
    """One object per event type: each field with its description and a sample value."""
    return [{name: {"description": DESCRIPTIONS.get(name, ""), "sampleValue": value}
             for name, value in sample(kind).items()} for kind in TYPES]
