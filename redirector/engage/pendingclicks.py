"""Clicks answered before their event is stored: the pending-clicks journal.

A click's lookup script (engage.store.scripts.clicks) also writes the raw click (token,
method, request facts bounded by ``bounded``, time, click-state replies) to its shard's
``{p}{tag}pc`` stream; the redirector answers the 302, then appends the event with the
entry's id (``append_event``): the append script deletes the entry, and an entry already
gone means another finisher appended it ('dup', nothing written twice). So an answered
click waits on one round trip, and its event is in Redis even if the redirector dies
before the append: ``Finisher`` (the webhooks worker's once-a-second loop) appends the
entries older than PENDING_AGE seconds, judged from what the entry holds (never the rate
limiter or burst set again), exactly once. [privacy]: an entry holds the address and
client fields raw (the judge needs them), for seconds; the event stores them masked.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Optional

import redis

from engage.erasure.privacy import mask_facts
from engage.geoip import Lookup, open_lookup, with_geo
from engage.settings import Settings
from engage.store import keys
from engage.store.events import EventError, EventLog, OpenGate
from engage.store.links import LinkStore, Resolved, StoreError
from engage.store.pressure import MemoryGauge
from engage.store.redisconn import reply_text, stream_entries
from engage.store.trackevent import RequestFacts, bounded, build_event
from engage.verdicts import machines
from engage.verdicts.judge import Judge, thresholds

log = logging.getLogger("engage.pendingclicks")
PENDING_AGE = 10.0  # seconds before an entry is taken as one whose redirector gave up
PER_TICK = 200  # entries finished per shard per tick at most
VERSION = 1  # of the entry's facts text


@dataclass(frozen=True)
class Pending:
    """One journal entry, read back: what ``append_event`` needs besides Redis."""

    token: str
    method: str
    facts: RequestFacts  # bounded, raw (not masked), no geo_ip
    now: float
    state: tuple[Optional[int], ...]  # SADD, EXPIRE, SCARD burst, SISMEMBER trap


def facts_text(token: str, method: str, facts: RequestFacts, now: float) -> str:
    """The entry's ``c`` field: the click as LOOKUP_LUA journals it (``facts`` bounded)."""
    return json.dumps([VERSION, token, method, facts.ip_address, facts.user_agent,
                       facts.accept_language, facts.referer, now],
                      separators=(",", ":"), ensure_ascii=False)


def parse(fields: Mapping[bytes, bytes]) -> Pending:
    """An entry's fields as a Pending; raises ValueError for anything else."""
    try:
        version, token, method, ip, agent, language, referer, now = json.loads(fields[b"c"])
        state = tuple(int(part) if part else None for part in fields[b"s"].split(b" "))
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable pending click: {exc}") from None
    texts = (token, method, ip, agent, language, referer)
    if version != VERSION or len(state) != 4 or not all(isinstance(t, str) for t in texts) \
            or not isinstance(now, (int, float)):
        raise ValueError("unreadable pending click: unexpected values")
    return Pending(token, method, bounded(RequestFacts(ip, agent, language, None, referer)),
                   float(now), state)


def click_parts(client: redis.Redis, settings: Settings,
                program: str) -> tuple[Judge, LinkStore, EventLog]:
    """What judges a click, resolves its token and appends its event, from ``settings``:
    one place for the redirector (engage.web.app) and the finisher, which must store a
    click's event alike. A bad rules file ends ``program`` (machines.load_or_exit)."""
    rules = machines.load_or_exit(program, settings.verdict_rules, settings.verdict_extra_rules)
    prefix = settings.key_prefix
    return (Judge(client, prefix, rules, thresholds(settings), settings.trap_window),
            LinkStore(client, prefix, settings.link_retention_days,
                      settings.metrics_retention_days,
                      record_retention_days=settings.record_retention_days),
            EventLog(client, prefix, settings.events_retention_days,
                     settings.link_retention_days, settings.metrics_retention_days))


def append_event(judge: Judge, events: EventLog, settings: Settings, kind: str,
                 resolved: Resolved, method: str, facts: RequestFacts, now: float,
                 gate: OpenGate | None = None, pending: tuple[str, bytes] | None = None) -> str:
    """Judge the raw request (``facts`` capped by ``bounded``: the callers' ``record`` and
    ``parse`` do it), append its event masked as [privacy] says, remember a trap hit: the
    append's outcome (EventLog.append). ``pending``: the click's (stream, entry id),
    deleted by the append. Raises EventError."""
    judged = judge.judge(kind, method, facts.ip_address, facts.user_agent, resolved, now)
    masked = mask_facts(facts, settings.ip_addresses, settings.user_agents)
    outcome = events.append(build_event(kind, resolved, masked, now, judged.engage),
                            gate=gate, resolved=resolved, pending=pending)
    if outcome != "dup":
        judge.remember(judged, resolved)
    return outcome


class Finisher:
    """Appends the pending clicks whose redirector did not (``tick``, once a second)."""

    def __init__(self, client: redis.Redis, settings: Settings, judge: Judge,
                 links: LinkStore, events: EventLog, geo: Lookup | None = None) -> None:
        self.client, self.settings, self.judge = client, settings, judge
        self.links, self.events, self.geo = links, events, geo
        self.gauge = MemoryGauge(client, settings.key_prefix, settings.events_high_water)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> Finisher:
        """With the parts the redirector has (``click_parts``)."""
        return cls(client, settings, *click_parts(client, settings, "engage-webhooks"),
                   open_lookup(settings.geoip_db))

    def tick(self, now: float | None = None, age: float = PENDING_AGE) -> int:
        """Finish the entries older than ``age`` s, PER_TICK per shard at most, each shard
        on its own (one that fails is logged and tried again next tick): how many.
        Above the events' memory high-water mark they wait, as the redirector's would."""
        if not self.gauge.events_allowed():
            return 0
        cutoff = int(((time.time() if now is None else now) - age) * 1000)
        done = 0
        for shard in keys.shard_ids():
            try:
                done += self.shard(shard, cutoff)
            except (redis.RedisError, EventError, StoreError) as exc:
                log.error("pending clicks of shard %d not finished (next tick): %s", shard, exc)
        return done

    def shard(self, shard: int, cutoff_ms: int) -> int:
        stream = keys.pending_clicks(self.settings.key_prefix, shard)
        entries = stream_entries(self.client.xrange(stream, "-", f"({cutoff_ms}", count=PER_TICK))
        for entry_id, fields in entries:
            self.finish(stream, entry_id, fields)
        return len(entries)

    def finish(self, stream: str, entry_id: bytes, fields: Mapping[bytes, bytes]) -> str:
        """Append one entry's event ('' when the entry is dropped): the append's outcome."""
        try:
            click = parse(fields)
        except ValueError as exc:
            log.error("pending click %s dropped: %s", reply_text(entry_id), exc)
            self.client.xdel(stream, entry_id)
            return ""
        resolved = self.links.resolve(click.token)
        if resolved is None or resolved.link is None:  # forgotten or expired since
            log.warning("pending click %s dropped: its link no longer resolves",
                        reply_text(entry_id))
            self.client.xdel(stream, entry_id)
            return ""
        try:
            outcome = append_event(self.judge, self.events, self.settings, "click",
                                   replace(resolved, extra=click.state), click.method,
                                   with_geo(self.geo, click.facts), click.now,
                                   pending=(stream, entry_id))
        except EventError:
            raise  # Redis: the entry stays, the next tick tries again
        except Exception:  # a bug: the entry would stop its shard's finishing for good
            log.exception("pending click %s dropped: it cannot be appended", reply_text(entry_id))
            self.client.xdel(stream, entry_id)
            return ""
        log.info("pending click %s of transmission %s appended late: %s",
                 reply_text(entry_id), resolved.message_key, outcome)
        return outcome

