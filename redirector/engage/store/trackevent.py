"""A SparkPost ``track_event`` object from a resolved token and the request: pure, no Redis.

Bounded (docs/limits.md): every client-supplied field is cut to MAX_CLIENT_FIELD bytes
(``bounded``) before it is judged or stored. engage.store.events stores what
``build_event`` makes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from engage.store.links import Resolved
from engage.store.tokens import open_token

MAX_CLIENT_FIELD = 512  # bytes of any client-supplied field (User-Agent, Referer, ...) kept


@dataclass(frozen=True)
class RequestFacts:
    """What the HTTP request tells about the person (or proxy) that opened or clicked."""

    ip_address: str
    user_agent: str = ""
    accept_language: str = ""
    geo_ip: dict[str, Any] | None = None
    referer: str = ""


def clip(text: str, limit: int = MAX_CLIENT_FIELD) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    if len(text) * 4 <= limit:  # the usual case, decided without encoding
        return text
    raw = text.encode("utf-8", "surrogatepass")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def bounded(facts: RequestFacts) -> RequestFacts:
    """The request facts with every client-supplied text cut to MAX_CLIENT_FIELD bytes:
    what one request can make us judge, store and send to webhooks is bounded."""
    fields = (facts.ip_address, facts.user_agent, facts.accept_language, facts.referer)
    if all(len(text) * 4 <= MAX_CLIENT_FIELD for text in fields):
        return facts
    return RequestFacts(clip(facts.ip_address), clip(facts.user_agent),
                        clip(facts.accept_language), facts.geo_ip, clip(facts.referer))


def iso_time(epoch: float) -> str:
    """SparkPost's timestamp format: UTC, milliseconds, ``Z``."""
    seconds = int(epoch // 1)
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return _iso_second(seconds) + f"{moment.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    """The text up to the milliseconds: events read back in a page share a few seconds
    and their messages' injection times (strftime was a fifth of building an event)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def build_event(kind: str, resolved: Resolved, facts: RequestFacts, now: float,
                engage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The track_event for one open/initial_open/click; ``event_id`` is added when stored.

    A message with several recipients has one set of links, so its events carry no
    single ``rcpt_to``: the lowercased list is in the additive key ``rcpt_to_list``.
    Additive keys for the /v1/track family: ``email_id`` (the message's open token) and,
    on clicks, ``referer``. ``engage``: the verdict (engage.verdicts.rules), last.
    """
    template, record = resolved.template, resolved.record
    event: dict[str, Any] = {
        "type": kind, "timestamp": iso_time(now), "message_id": record.message_id,
        "transmission_id": resolved.message_key, "campaign_id": template.campaign_id,
    }
    event.update(_recipient_fields(record.rcpt_to))
    event.update({
        "rcpt_meta": record.metadata, "rcpt_tags": list(template.tags),
        "friendly_from": template.friendly_from, "msg_from": record.mail_from,
        "subject": record.subject, "sending_domain": template.sending_domain,
        "injection_time": iso_time(record.injection_time),
        "open_tracking": template.open_tracking, "click_tracking": template.click_tracking,
        "initial_pixel": template.open_tracking, "ip_address": facts.ip_address,
        "user_agent": facts.user_agent, "queue_id": record.queue_id,
        "email_id": open_token(resolved.message_key, record.template_id),
    })
    if kind == "click" and resolved.link is not None:
        event["target_link_url"] = resolved.link.url
        event["target_link_name"] = resolved.link.name
        event["accept_language"] = facts.accept_language
        event["referer"] = facts.referer
    if facts.geo_ip:
        event["geo_ip"] = facts.geo_ip
    if engage is not None:
        event["engage"] = engage
    return event


def _recipient_fields(rcpt_to: Sequence[str]) -> dict[str, Any]:
    if len(rcpt_to) == 1:
        raw = rcpt_to[0]
        return {"rcpt_to": raw.lower(), "raw_rcpt_to": raw,
                "recipient_domain": raw.rpartition("@")[2].lower()}
    return {"rcpt_to_list": [raw.lower() for raw in rcpt_to]}
