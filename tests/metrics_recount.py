"""Test helpers for the metrics API: a realistic mix of traffic, and an independent recount.

``make_traffic`` registers messages through the real LinkStore and appends events through
the real EventLog: several campaigns (one with the separator characters in its name),
two sending domains, named and unnamed links, multi-recipient messages, repeats, humans
(with and without an ``engage`` field), scanners, privacy proxies and prefetches, spread
over several hours. ``recount`` computes SparkPost's metrics from the raw stream with the
definitions written out plainly, sharing no code with engage.store.aggregates:
  a total counts every qualifying event; a unique counts a message (or, per link, a
  message and link) in the hour of its first qualifying event in stream order;
  confirmed opens qualify on open, initial_open and click; nonprefetched = verdict human.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any, Optional

from engage.store import keys
from engage.store.events import EventLog, RequestFacts, build_event
from engage.store.links import Link, LinkStore, MessageRecord, Resolved, Template, new_message_key
from support.stored import key_in_shard

CAMPAIGNS = ("spring", "summer", "", "a|b%c")
DOMAINS = ("example.com", "other.example")
LINKS = (Link("https://example.com/cta?x=1", "cta"), Link("https://example.com/f", "footer|x"),
         Link("https://example.com/unnamed?y=2"))
VERDICTS = (None, None, None, None, "human", "scanner", "privacy_proxy", "prefetch")
RENDER = frozenset(("open", "initial_open"))
CLICK = frozenset(("click",))
# metric -> (event types that qualify, unique per message, humans only)
BASE = {
    "count_rendered": (RENDER, False), "count_initial_rendered": (frozenset(("initial_open",)), False),
    "count_unique_rendered": (RENDER, True),
    "count_unique_initial_rendered": (frozenset(("initial_open",)), True),
    "count_unique_confirmed_opened": (RENDER | CLICK, True),
    "count_clicked": (CLICK, False), "count_unique_clicked": (CLICK, True),
}
DEFINITIONS = {name: (types, unique, False) for name, (types, unique) in BASE.items()}
DEFINITIONS.update({name.replace("count_", "count_nonprefetched_"): (types, unique, True)
                    for name, (types, unique) in BASE.items()})
ENGAGEMENT = tuple(DEFINITIONS)
ALL = ("count_sent",) + ENGAGEMENT
LINK_METRICS = {"count_clicked": (False, False), "count_raw_clicked": (True, False),
                "count_unique_clicked": (True, False),
                "count_nonprefetched_clicked": (False, True),
                "count_nonprefetched_unique_clicked": (True, True)}


@dataclass(frozen=True)
class Sent:
    key: str
    campaign: str
    domain: str
    injected: int
    template: Template
    record: MessageRecord


def hour_start(epoch: float) -> int:
    return int(epoch // 3600 * 3600)


def register(store: LinkStore, campaign: str, domain: str, injected: int,
             rcpts: tuple[str, ...] = ("reader@example.net",), shard: Optional[int] = None) -> Sent:
    """A message registered as the milter does (in ``shard`` when given)."""
    template = Template(links=LINKS, campaign_id=campaign, tags=("t",),
                        friendly_from=f"news@{domain}", sending_domain=domain)
    key = new_message_key() if shard is None else key_in_shard(shard)
    record = MessageRecord(rcpt_to=rcpts, mail_from=f"bounce@{domain}", subject="Hi",
                           message_id=f"<{key}@{domain}>", queue_id="Q1",
                           injection_time=injected, template_id=template.template_id)
    store.register(key, template, record)
    return Sent(key, campaign, domain, injected, template, record)


def event_for(sent: Sent, kind: str, when: float, link: Optional[int] = None,
              verdict: Optional[str] = None) -> dict[str, Any]:
    resolved = Resolved(sent.key, sent.template, sent.record,
                        LINKS[link] if kind == "click" and link is not None else None)
    event = build_event(kind, resolved, RequestFacts("192.0.2.9", "UA/1"), when)
    if verdict is not None:
        event["engage"] = {"verdict": verdict, "reasons": ["test"]}
    return event


def make_traffic(store: LinkStore, log: EventLog, first_hour: int, messages: int = 60,
                 seed: int = 7) -> list[Sent]:
    """``messages`` sent over hours first_hour..+3, events over the 6 hours after each."""
    rng = random.Random(seed)
    sent = []
    for n in range(messages):
        rcpts = ("a@example.net", "b@example.net", "c@example.net") if n % 7 == 0 else (
            f"r{n}@example.net",)
        sent.append(register(store, CAMPAIGNS[n % 4], DOMAINS[n % 3 % 2],
                             first_hour + rng.randrange(4 * 3600), rcpts))
    planned = []
    for message in sent:
        for _ in range(rng.choice((0, 1, 2, 3, 5, 8))):
            kind = rng.choice(("open", "open", "initial_open", "initial_open", "click", "click"))
            when = message.injected + rng.randrange(1, 6 * 3600)
            planned.append((when, event_for(message, kind, when, rng.randrange(len(LINKS)),
                                            rng.choice(VERDICTS))))
    for _, event in sorted(planned, key=lambda item: item[0]):
        log.append(event)
    return sent


def stream_events(client: Any, prefix: str = "engage:") -> list[dict[str, Any]]:
    """Every stored event of every shard's stream (and layout 1's), with its event_id, by
    event_id: each message's events in its stream's order (a message is in one shard)."""
    events, log = [], EventLog(client, prefix)
    for shard in keys.shard_ids(layout1=True):
        events += log.decoded(shard, client.xrange(keys.events(prefix, shard)))
    return sorted(events, key=lambda event: int(event["event_id"]))


def shard_of_event(event: dict[str, Any]) -> int:
    """The shard an event (of a layout-2 stream) is in: its message's."""
    return keys.shard_of(event["transmission_id"])


def with_overrides(events: list[dict[str, Any]], overrides: dict[str, dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    return [{**event, "engage": overrides[event["event_id"]]}
            if event["event_id"] in overrides else event for event in events]


def human(event: dict[str, Any]) -> bool:
    return event.get("engage", {}).get("verdict", "human") == "human"


def event_hour(event: dict[str, Any]) -> int:
    moment = datetime.strptime(event["timestamp"][:13], "%Y-%m-%dT%H")
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def label(event: dict[str, Any]) -> str:
    return event.get("target_link_name") or event.get("target_link_url", "")


def group_of(group: str, event_or_sent: Any, hour: int, zone: tzinfo, precision: str) -> str:
    if group == "campaign_id":
        return event_or_sent["campaign_id"] if isinstance(event_or_sent, dict) else event_or_sent.campaign
    if group == "sending_domain":
        return event_or_sent["sending_domain"] if isinstance(event_or_sent, dict) else event_or_sent.domain
    if group == "ts":
        return ts_label(hour, zone, precision)
    return ""


def ts_label(hour: int, zone: tzinfo, precision: str) -> str:
    local = datetime.fromtimestamp(hour, zone)
    if precision == "day":
        local = datetime(local.year, local.month, local.day, tzinfo=zone)
    return local.isoformat()


def recount(events: list[dict[str, Any]], sent: list[Sent], start: int, end: int,
            group: str = "", campaigns: Optional[set[str]] = None,
            domains: Optional[set[str]] = None, zone: tzinfo = timezone.utc,
            precision: str = "hour") -> dict[str, dict[str, int]]:
    """{group value: {metric: n}} for hours in [start, end), every metric in ALL."""
    def wanted(campaign: str, domain: str) -> bool:
        return (campaigns is None or campaign in campaigns) and (domains is None or domain in domains)

    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ALL, 0))
    for message in sent:
        hour = hour_start(message.injected)
        if start <= hour < end and wanted(message.campaign, message.domain):
            totals[group_of(group, message, hour, zone, precision)]["count_sent"] += 1
    for metric, (types, unique, humans_only) in DEFINITIONS.items():
        seen: set[str] = set()
        for event in events:
            if event["type"] not in types or (humans_only and not human(event)):
                continue
            if unique:
                if event["transmission_id"] in seen:
                    continue
                seen.add(event["transmission_id"])
            hour = event_hour(event)
            if start <= hour < end and wanted(event["campaign_id"], event["sending_domain"]):
                totals[group_of(group, event, hour, zone, precision)][metric] += 1
    return dict(totals)


def recount_links(events: list[dict[str, Any]], start: int, end: int,
                  campaigns: Optional[set[str]] = None) -> dict[str, dict[str, int]]:
    """{link name or URL: {metric: n}} of clicks in hours [start, end)."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(LINK_METRICS, 0))
    for metric, (unique, humans_only) in LINK_METRICS.items():
        seen: set[tuple[str, str]] = set()
        for event in events:
            if event["type"] != "click" or (humans_only and not human(event)):
                continue
            key = (event["transmission_id"], label(event))
            if unique:
                if key in seen:
                    continue
                seen.add(key)
            if start <= event_hour(event) < end and (campaigns is None
                                                     or event["campaign_id"] in campaigns):
                totals[label(event)][metric] += 1
    return dict(totals)


def nonzero(rows: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {key: counts for key, counts in rows.items() if any(counts.values())}


def stored_totals(client: Any, prefix: str = "engage:", kinds: str = "sel"
                  ) -> dict[tuple[str, str], dict[bytes, int]]:
    """What the hourly buckets hold, however kept: per (kind, hour), every counter summed
    over the shards' buckets, the folded bucket and the folding copies a reader would
    count (engage.metrics.buckets), the marks (``#`` fields) left out."""
    totals: dict[tuple[str, str], dict[bytes, int]] = {}
    every = {"target_nodes": client.PRIMARIES} if hasattr(client, "PRIMARIES") else {}
    for raw in client.keys(f"{prefix}*", **every):
        name = raw.decode()
        family = keys.family_of(prefix, name)
        if family is None or family.name not in ("aggregates", "folded aggregates",
                                                 "folding aggregates"):
            continue
        hour = name.removesuffix(":folding")[-13:]
        kind = name.removesuffix(":folding")[-15]
        if kind not in kinds:
            continue
        fields = client.hgetall(name)
        if family.name == "folding aggregates":
            mark = client.hget(keys.folded(prefix, kind, hour),
                               f"#{keys.shard_of_key(prefix, name)}")
            if int(fields[b"#"]) <= int(mark or 0):
                continue  # merged already
        into = totals.setdefault((kind, hour), {})
        for field, value in fields.items():
            if not field.startswith(b"#"):
                into[field] = into.get(field, 0) + int(value)
    return {key: value for key, value in totals.items() if value}
