"""An event as stored and as read: pure, no Redis.

A stream entry keeps what only the request could tell (type, time, client address and
agent, languages, referer, geolocation, verdict) and refers to its message by its open
token (``@``) and to its link by index (``i``). What the message record and the template
say (recipient, envelope, subject, campaign, tags, link URL and name ...) is added back
when the event is read (``expand``), exactly as ``build_event`` wrote it when it happened:
a click costs a few hundred bytes, not a copy of its message. An entry stored whole (by
releases before, or by ``EventLog.append_many`` without the token it came from) is read
as it is.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from engage.store.links import Resolved
from engage.store.records import Link, MessageRecord, Template
from engage.store.tokens import TID_LEN
from engage.store.trackevent import RequestFacts, build_event, iso_time

REF = "@"  # the open token of the event's message: message key, template id
LINK = "i"  # the clicked link's index in the template
URL, NAME = "target_link_url", "target_link_name"  # a link of no template (signed /v1 URLs)
# What build_event takes from the request and the verdict, by the short name it is stored
# under (a million clicks pay for every byte of a name).
OWN = {"type": "t", "ip_address": "a", "user_agent": "u", "accept_language": "l",
       "referer": "f", "geo_ip": "g", "engage": "v"}
TIME = "s"  # the timestamp in epoch ms, when it is not the stream id's ms
PERSON = {"verdict": "human", "reasons": []}  # most events' verdict: stored as HUMAN
HUMAN = 0
MARK = b'"t":'  # a stored form starts with its type under this name (after event_id when read)


def stored(event: dict[str, Any], resolved: Resolved) -> tuple[str, int | None]:
    """The JSON text an event is stored as (its own fields, where its message is) and its
    time in epoch ms: the append makes that the stream id's ms, else adds it to the text as
    ``s`` (engage.store.scripts.events). A timestamp that is no exact ms is in the text."""
    form: dict[str, Any] = {OWN["type"]: event["type"], REF: event["email_id"]}
    if resolved.link in resolved.template.links:
        form[LINK] = resolved.template.links.index(resolved.link)
    elif resolved.link is not None:
        form[URL], form[NAME] = resolved.link
    form.update((short, event[name]) for name, short in OWN.items()
                if event.get(name, "") != "")  # an empty field reads back as "" (expand)
    if form.get(OWN["engage"]) == PERSON:
        form[OWN["engage"]] = HUMAN
    stamp = str(event.get("timestamp", ""))
    ms = _millis(stamp)
    if ms is None:
        form["timestamp"] = stamp
    return json.dumps(form, separators=(",", ":"), ensure_ascii=False, allow_nan=False), ms


def with_time(form: dict[str, Any], event_id: int) -> dict[str, Any]:
    """A stored form as read, with its time: ``s`` when the text has it, else the stream
    id's ms (the event_id's thousands)."""
    if TIME not in form and "timestamp" not in form:
        form[TIME] = event_id // 1000
    return form


def is_stored_form(item: bytes) -> bool:
    """Whether an event read back as ``{"event_id":"N",...}`` is in the stored form."""
    start = item.index(b",") + 1
    return item.startswith(MARK, start)


def reference(form: dict[str, Any]) -> tuple[str, str]:
    """(message key, template id) of a stored form."""
    token = str(form[REF])
    return token[:-TID_LEN], token[-TID_LEN:]


def expand(form: dict[str, Any], record: Optional[MessageRecord], template: Optional[Template],
           built: Optional[dict[tuple[Any, ...], dict[str, Any]]] = None) -> dict[str, Any]:
    """The SparkPost event of a stored form, from its message's record and template as
    they are now (None: gone, expired or never known; the event then names no recipient,
    or no campaign and link). ``built``: what the events of a page share, kept between
    calls (the same message, type and link: all but the request's fields)."""
    message_key, template_id = reference(form)
    kind = str(form[OWN["type"]])
    link_of = (form.get(LINK), form.get(URL), form.get(NAME))
    key = (message_key, template_id, kind, *link_of)
    shared = None if built is None else built.get(key)
    if shared is None:
        shared = _shared(kind, message_key, template_id, link_of, record, template)
        if built is not None:
            built[key] = shared
    event = dict(shared)
    event["timestamp"] = _timestamp(form)
    event["ip_address"] = form.get(OWN["ip_address"], "")
    event["user_agent"] = form.get(OWN["user_agent"], "")
    if "accept_language" in event:  # a click's
        event["accept_language"] = form.get(OWN["accept_language"], "")
        event["referer"] = form.get(OWN["referer"], "")
    if form.get(OWN["geo_ip"]):
        event["geo_ip"] = form[OWN["geo_ip"]]
    verdict = form.get(OWN["engage"])
    if verdict is not None:
        event["engage"] = {**PERSON, "reasons": []} if verdict == HUMAN else verdict
    return event


def _shared(kind: str, message_key: str, template_id: str, link_of: tuple[Any, ...],
            record: Optional[MessageRecord], template: Optional[Template]) -> dict[str, Any]:
    """build_event's event with empty request fields: what the record and template say."""
    template = template or Template()
    record = record or MessageRecord(template_id=template_id)
    index, url, name = link_of
    link: Optional[Link] = None
    if index is not None:
        link = template.links[int(index)] if 0 <= int(index) < len(template.links) else Link("")
    elif url is not None:
        link = Link(str(url), str(name or ""))
    return build_event(kind, Resolved(message_key, template, record, link), RequestFacts(""), 0)


def timestamp_of(entry_id: bytes | str, stored_text: bytes | str) -> str:
    """The timestamp of a stream entry (its id, its ``e`` field), stored whole or as a
    stored form."""
    ms = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")[0]
    return _timestamp(with_time(json.loads(stored_text), int(ms) * 1000))


def _timestamp(form: dict[str, Any]) -> str:
    """A form's timestamp, given ``with_time`` (an event stored whole has its own)."""
    return iso_time(form[TIME] / 1000) if TIME in form else str(form.get("timestamp", ""))


def _millis(stamp: str) -> int | None:
    """Epoch milliseconds of a SparkPost timestamp that ``iso_time`` gives back exactly."""
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    ms = round(moment.timestamp() * 1000)
    return ms if iso_time(ms / 1000) == stamp else None

