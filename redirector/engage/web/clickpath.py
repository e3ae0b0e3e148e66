"""The click path without Flask: ``GET|HEAD <prefix>/c/<token>`` answered by a small WSGI
layer in front of the Flask app, which stays the app for everything else.

Flask's routing, request context and Response objects were a fifth of a click's Python
(tests/bench/profile_click.py). Promises, the same as the Flask views: a 302 only to the
URL the link store holds for the token, else the 404 page; over the rate limit the 403
page; Redis down the 503 page; the same headers, event and access-log line. A request
this layer does not fully recognise (another method or path, a token with characters no
token has) goes on to Flask untouched, so odd paths keep Flask's answers. It sits inside
ProxyFix, so ``REMOTE_ADDR`` is already the client's address.
"""
from __future__ import annotations

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
from engage.erasure.privacy import mask_facts, mask_ip, mask_user_agent
from engage.store import keys, layout
from engage.store.events import EventError, EventLog
from engage.store.links import LinkStore, Resolved, StoreError, resolved_from
from engage.store.pressure import MemoryGauge, is_refused
from engage.store.redisconn import is_cluster, run_script
from engage.store.scripts.clicks import LOOKUP_LUA, ClickLookup
from engage.store.tokens import split_token
from engage.store.trackevent import RequestFacts, bounded, build_event
from engage.verdicts.judge import Judge
from engage.web.drops import Drops
from engage.web.geoip import Lookup
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
                started: float, event: str, user_agent: str) -> None:
    """One line per request; IP and User-Agent as [privacy] allows them to be kept."""
    elapsed = (time.perf_counter() - started) * 1000
    agent = mask_user_agent(user_agent, settings.user_agents)
    access_log.info("ip=%s method=%s path=%s status=%d ms=%.2f event=%s ua=%s",
                    mask_ip(ip, settings.ip_addresses) or "-", method, log_path(path), status,
                    elapsed, event, json.dumps(agent[:200], allow_nan=False))


def lookup_click(services: Services, token: str, ip: str, now: float,
                 url: Optional[str] = None) -> tuple[bool, Optional[Resolved]]:
    """(within the rate limit, what the token resolves to): the rate-limit count, the token
    and the judge's click state in one round trip (a malformed token is counted alone)."""
    parts, limiter = split_token(token), services.limiter
    if parts is None:
        return limiter.allow(ip, now), None
    message_key, template_id, index = parts
    state_keys, state_args = services.judge.click_keys(now, ip, message_key, index, url)
    record_key, field = services.links.record_at(message_key)
    names = [record_key, services.links.template_key(template_id, keys.shard_of(message_key)),
             *state_keys]
    args: list[Any] = [field, *state_args]
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
    if alone:
        return limiter.allow(ip, now), resolved
    counted = reply.counted  # None: not counted (refused): fail open
    return limiter.allows(counted) if counted is not None else True, resolved


def record(services: Services, kind: str, resolved: Resolved, method: str,
           facts: RequestFacts, now: float) -> str:
    """Judge the raw request (its client fields capped, engage.store.events.bounded),
    append the event: the access log's event word. Above the memory high-water mark
    nothing is tried; an open goes through its network's gate (engage.web.opengate). A
    failure loses the event (counted and logged, engage.web.drops.Drops), never the answer."""
    if not services.gauge.events_allowed():
        return dropped(services, kind, "high-water")
    facts = bounded(facts)
    settings = services.settings
    judged = services.judge.judge(kind, method, facts.ip_address, facts.user_agent,
                                  resolved, now)
    gate = (open_gate(settings, kind, resolved.message_key, facts.ip_address, resolved.extra)
            if kind != "click" else None)  # extra: engage.web.opengate.read_count's reply
    try:
        masked = mask_facts(facts, settings.ip_addresses, settings.user_agents)
        outcome = services.events.append(build_event(kind, resolved, masked, now, judged.engage),
                                         gate=gate, resolved=resolved)
        services.judge.remember(judged, resolved)
    except EventError as exc:
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
        event, location = "-", None
        try:
            allowed, resolved = lookup_click(self.services, token, ip, now)
            status = 403 if not allowed else 404
            if allowed and resolved is not None and resolved.link is not None:
                location = safe_location(resolved.link.url)
            if location is not None and resolved is not None:  # only a resolved link has a location
                status, event = 302, "click"
                event = record(self.services, "click", resolved, method,
                               self.facts(environ, ip), now)
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
        access_line(self.services.settings, ip, method, path, status, started, event,
                    environ.get("HTTP_USER_AGENT", ""))
        return [] if method == "HEAD" else [body]

    def facts(self, environ: dict[str, Any], ip: str) -> RequestFacts:
        geo = self.services.geo
        return RequestFacts(ip, environ.get("HTTP_USER_AGENT", ""),
                            environ.get("HTTP_ACCEPT_LANGUAGE", ""),
                            geo(ip) if geo and ip else None, environ.get("HTTP_REFERER", ""))
