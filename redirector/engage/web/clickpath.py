"""The click path without Flask: ``GET|HEAD <prefix>/c/<token>`` answered by a small WSGI
layer in front of the Flask app, which stays the app for everything else.

Flask's routing, request context and Response objects were a fifth of a click's Python
(tests/bench/profile_click.py). Promises, the same as the Flask views: a 302 only to the
URL the link store holds for the token, else the 404 page; over the rate limit the 403
page; Redis down the 503 page; the same headers, event and access-log line. A request
this layer does not fully recognise (another method or path, a token with characters no
token has) goes on to Flask untouched, so odd paths keep Flask's answers. It sits inside
ProxyFix, so ``REMOTE_ADDR`` is already the client's address.

A click waits on one Redis round trip: the lookup script also journals the raw click
(engage.pendingclicks), the 302 is answered, and the event is appended when the server
closes the answered body (``Answered``), the access-log line after it. If this process
dies in between, the webhooks worker appends the journaled click ~10 s later. Where the
journal write is refused (Redis full) or events are paused (high-water), the event is
appended (or dropped) before the answer, as it was.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Optional
from urllib.parse import quote, urlsplit

import redis
from redis.commands.core import Script

from engage import settings as config
from engage.erasure.privacy import mask_ip, mask_user_agent
from engage.geoip import Lookup, with_geo
from engage.pendingclicks import append_event, facts_text
from engage.store import keys, layout
from engage.store.events import EventError, EventLog
from engage.store.links import LinkStore, Resolved, StoreError, resolved_from
from engage.store.pressure import MemoryGauge, is_refused
from engage.store.redisconn import is_cluster, run_script
from engage.store.scripts.clicks import LOOKUP_LUA, ClickLookup
from engage.store.tokens import split_token
from engage.store.trackevent import RequestFacts, bounded
from engage.verdicts.judge import Judge
from engage.web.answered import Answered
from engage.web.drops import Drops
from engage.web.opengate import count_recorded, open_gate
from engage.web.ratelimit import RateLimiter

log = logging.getLogger("engage.web.app")  # the redirector's log, whichever layer answered
access_log = logging.getLogger("engage.access")

REDIRECT_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
PAGE = ("<!doctype html>\n<html lang=en><meta charset=utf-8><meta name=robots "
        "content=noindex><title>{0}</title><h1>{0}</h1><p>{1}</p></html>\n")
PAGES = {400: ("Bad request", "This link is not valid."),
         401: ("Login required", "This page needs a dashboard login."),
         403: ("Forbidden", "Too many requests from your address. Please try again later."),
         404: ("Link not found", "This link is not valid."),
         429: ("Too many requests", "Please try again later."),
         503: ("Temporarily unavailable", "Please try again in a moment.")}
TOKEN_IN_PATH = re.compile(r"(/(?:[coi]|open|click|messages)/[^/]{6})[^/]+$")  # 36 of 96 secret bits
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
URL_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))  # printable ASCII, no space
HTML = "text/html; charset=utf-8"
Pending = tuple[str, bytes]  # a journaled click: its pending-clicks stream and entry id


@dataclass(frozen=True)
class Services:
    settings: config.Settings
    client: redis.Redis
    links: LinkStore
    events: EventLog
    limiter: RateLimiter
    geo: Lookup | None
    judge: Judge
    lookup: Script = field(init=False, repr=False, compare=False)  # LOOKUP_LUA
    gauge: MemoryGauge = field(init=False, repr=False, compare=False)  # events high-water
    drops: Drops = field(init=False, repr=False, compare=False)  # events not stored

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookup", self.client.register_script(LOOKUP_LUA))
        object.__setattr__(self, "gauge", MemoryGauge(
            self.client, self.settings.key_prefix, self.settings.events_high_water))
        object.__setattr__(self, "drops", Drops())


def page(status: int) -> str:
    title, text = PAGES.get(status, ("Error", "The request could not be served."))
    return PAGE.format(title, text)


def safe_location(url: str) -> str | None:
    """The stored URL as a Location value: unchanged when it is printable ASCII (the milter
    only stores RFC 3986 URLs); other bytes percent-encoded; None unless http(s)."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return None
    if url.isascii() and url.isprintable() and " " not in url:
        return url
    return quote(url, safe=URL_SAFE)


def log_path(path: str) -> str:
    """A request path for the logs: tokens cut (the caller leaves the query out)."""
    return TOKEN_IN_PATH.sub(r"\1...", path)


def access_line(settings: config.Settings, ip: str, method: str, path: str, status: int,
                started: float, event: str, user_agent: str,
                answered: float | None = None) -> None:
    """One line per request; IP and User-Agent as [privacy] allows them to be kept.
    ``ms``: until ``answered`` (perf_counter) when the line is written later."""
    elapsed = ((time.perf_counter() if answered is None else answered) - started) * 1000
    agent = mask_user_agent(user_agent, settings.user_agents)
    access_log.info("ip=%s method=%s path=%s status=%d ms=%.2f event=%s ua=%s",
                    mask_ip(ip, settings.ip_addresses) or "-", method, log_path(path), status,
                    elapsed, event, json.dumps(agent[:200], allow_nan=False))


def lookup_click(services: Services, token: str, ip: str, now: float,
                 url: Optional[str] = None, journal: str = ""
                 ) -> tuple[bool, Optional[Resolved], Optional[Pending]]:
    """(within the rate limit, what the token resolves to, the pending-clicks entry
    written from ``journal`` if any): the rate-limit count, the token, the judge's click
    state and the journal in one round trip (a malformed token is counted alone)."""
    parts, limiter = split_token(token), services.limiter
    if parts is None:
        return limiter.allow(ip, now), None, None
    message_key, template_id, index = parts
    state_keys, state_args = services.judge.click_keys(now, ip, message_key, index, url)
    record_key, field = services.links.record_at(message_key)
    shard = keys.shard_of(message_key)
    stream = keys.pending_clicks(services.settings.key_prefix, shard)
    names = [record_key, services.links.template_key(template_id, shard), *state_keys, stream]
    args: list[Any] = [field, *state_args, journal, limiter.limit]
    alone = limiter.limit and is_cluster(services.client)  # its key is in no shard
    if limiter.limit and not alone:
        counter, ttl = limiter.counter(ip, now)
        names.append(counter)
        args.append(ttl)
    try:
        reply = ClickLookup.from_reply(run_script(services.client, services.lookup, names, args))
    except redis.RedisError as exc:
        raise StoreError(str(exc)) from exc
    record_text, template_text = reply.record, reply.template
    if record_text is None and not field:
        record_text, template_text = services.links.layout1.fill(message_key, template_id,
                                                                  template_text)
    resolved = resolved_from(message_key, template_id, index, record_text, template_text,
                             reply.state, services.links.orphans,  # ``also``: the ClickState
                             reply.base)
    pending = (stream, reply.pending) if reply.pending else None
    if alone:
        return limiter.allow(ip, now), resolved, pending
    counted = reply.counted  # None: not counted (refused): fail open
    return limiter.allows(counted) if counted is not None else True, resolved, pending


def record(services: Services, kind: str, resolved: Resolved, method: str,
           facts: RequestFacts, now: float, pending: Optional[Pending] = None) -> str:
    """Judge the raw request (its client fields capped, engage.store.events.bounded),
    append the event (engage.pendingclicks.append_event): the access log's event word.
    Above the memory high-water mark nothing is tried (unless the click was journaled
    below it: ``pending``); an open goes through its network's gate (engage.web.opengate).
    A failure loses the event (counted and logged, engage.web.drops.Drops), never the
    answer; a journaled click's stays in the journal for the finisher."""
    if pending is None and not services.gauge.events_allowed():
        return dropped(services, kind, "high-water")
    facts = bounded(facts)
    settings = services.settings
    gate = (open_gate(settings, kind, resolved.message_key, facts.ip_address, resolved.extra)
            if kind != "click" else None)  # extra: engage.web.opengate.read_count's reply
    try:
        outcome = append_event(services.judge, services.events, settings, kind, resolved,
                               method, facts, now, gate, pending)
    except EventError as exc:
        if pending is not None:
            log.warning("%s event of transmission %s left to the finisher: %s", kind,
                        resolved.message_key, exc)
            return f"{kind}-pending"
        if is_refused(exc):
            return dropped(services, kind, "refused")
        log.error("%s event lost for transmission %s: %s", kind, resolved.message_key, exc)
        return dropped(services, kind, "lost")
    if outcome == "limited":
        return dropped(services, kind, "limited")
    if gate is not None and outcome not in ("repeat", "dup"):
        try:  # recorded: it counts toward the network's limit
            count_recorded(services.client, settings, facts.ip_address, now)
        except redis.RedisError as exc:
            log.warning("open limit not counted: %s", exc)
    # 'dup': redis-py resent the append after a timeout and the first copy had run.
    return {"repeat": f"{kind}-repeat", "dup": f"{kind}-resent"}.get(outcome, kind)


def dropped(services: Services, kind: str, reason: str) -> str:
    """Count (and now and then log and store) one event not stored: the access log's word."""
    word = services.drops.add(kind, reason)
    services.drops.flush(services.client, services.settings.key_prefix)
    return word


class ClickPath:
    """WSGI middleware: clicks here, every other request to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], services: Services,
                 prefixes: Iterable[str]) -> None:
        self.app = app
        self.services = services
        self.prefixes = frozenset(prefixes)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        prefix, _, token = path.rpartition(layout.CLICK)
        if (method not in ("GET", "HEAD") or prefix not in self.prefixes
                or not TOKEN_CHARS.fullmatch(token)):
            return self.app(environ, start_response)
        started, now = time.perf_counter(), time.time()
        ip = environ.get("REMOTE_ADDR") or ""
        facts = bounded(RequestFacts(ip, environ.get("HTTP_USER_AGENT", ""),
                                     environ.get("HTTP_ACCEPT_LANGUAGE", ""), None,
                                     environ.get("HTTP_REFERER", "")))
        services = self.services
        journal = facts_text(token, method, facts, now) if services.gauge.events_allowed() else ""
        event, location, pending, resolved = "-", None, None, None
        try:
            allowed, resolved, pending = lookup_click(services, token, ip, now, journal=journal)
            status = 403 if not allowed else 404
            if allowed and resolved is not None and resolved.link is not None:
                location = safe_location(resolved.link.url)
            if location is not None and resolved is not None:  # only a resolved link has a location
                status, event = 302, "click"
                if pending is None:  # not journaled: appended (or dropped) before the answer
                    event = record(services, "click", resolved, method, self.geo(facts), now)
        except (StoreError, EventError, redis.RedisError) as exc:
            log.error("%s %s: redis unavailable: %s", method, log_path(path), exc)
            status, location = 503, None
        except Exception:
            log.exception("%s %s failed", method, log_path(path))
            status, location = 500, None
        if location is not None:
            headers = [("Content-Type", HTML), ("Content-Length", "0"),
                       ("Location", location), *REDIRECT_HEADERS.items()]
            body = b""
        else:
            body = page(status).encode()
            headers = [("Content-Type", HTML), ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTPStatus(status).phrase.upper()}", headers)
        answer = [] if method == "HEAD" else [body]
        log_line = functools.partial(access_line, services.settings, ip, method, path, status,
                                     started, user_agent=environ.get("HTTP_USER_AGENT", ""))
        if pending is None:
            log_line(event)
            return answer
        if status == 302 and resolved is not None:
            return Answered(answer, functools.partial(
                self.append, resolved, method, facts, now, pending, log_line))
        return Answered(answer, functools.partial(self.discard, pending, log_line))

    def append(self, resolved: Resolved, method: str, facts: RequestFacts, now: float,
               pending: Pending, log_line: Callable[..., None]) -> None:
        """After the 302: the click's event, then its access-log line."""
        answered = time.perf_counter()
        event = record(self.services, "click", resolved, method, self.geo(facts), now, pending)
        log_line(event, answered=answered)

    def discard(self, pending: Pending, log_line: Callable[..., None]) -> None:
        """After another answer (a link index too high, a limit counted outside the
        script): the journaled click goes, unappended."""
        answered = time.perf_counter()
        try:
            self.services.client.xdel(*pending)
        except redis.RedisError as exc:  # the finisher will find no link, or re-judge it
            log.warning("pending click not discarded: %s", exc)
        log_line("-", answered=answered)

    def geo(self, facts: RequestFacts) -> RequestFacts:
        return with_geo(self.services.geo, facts)
