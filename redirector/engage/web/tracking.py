"""The tracked URLs the milter writes: ``/c/<token>`` (click), ``/o/<token>`` and
``/i/<token>`` (open pixels), under the path of every tracking URL.

A click answers 302 only to the URL the link store holds for the token (http/https, byte
for byte), else the 404 page; over the rate limit the 403 page. Most clicks never get
here: engage.web.clickpath answers them in front of Flask; what it hands on (tokens with
characters no token has) gets the same answers here. A pixel always answers the
43-byte GIF, recorded or not. The helpers are shared with the /v1/track family.
"""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, abort, g, request

from engage.store.trackevent import RequestFacts
from engage.web.clickpath import lookup_click, record, safe_location
from engage.web.extension import Engage, engage
from engage.web.opengate import read_count
from engage.web.responses import ExactRedirect, gif

tracking = Blueprint("tracking", __name__)


def now() -> float:
    return float(g.get("now") or time.time())


def client_facts(services: Engage) -> RequestFacts:
    ip = request.remote_addr or ""
    return RequestFacts(ip, request.headers.get("User-Agent", ""),
                        request.headers.get("Accept-Language", ""),
                        services.geo(ip) if services.geo and ip else None,
                        request.headers.get("Referer", ""))


def record_event(services: Engage, kind: str, resolved: Any) -> None:
    """engage.web.clickpath.record for this request; the event word for the access log."""
    g.event = kind
    g.event = record(services, kind, resolved, request.method, client_facts(services), now())


def stored_redirect(token: str) -> Response:
    """Over the rate limit a 403 whatever the token; else the stored link or a 404."""
    services = engage()
    allowed, resolved, _ = lookup_click(services, token, request.remote_addr or "", now())
    if not allowed:
        abort(403)
    location = safe_location(resolved.link.url) if resolved and resolved.link else None
    if location is None:
        abort(404)
    record_event(services, "click", resolved)
    return ExactRedirect(location)


def pixel(token: str, kind: str) -> Response:
    services = engage()
    ip, moment = request.remote_addr or "", now()
    resolved = services.links.resolve(
        token, also=lambda pipe, _key, _index: read_count(services.settings, ip, moment, pipe))
    if resolved is not None and resolved.link is None:
        record_event(services, kind, resolved)
    else:
        g.event = "unknown"
    return gif()


@tracking.route("/c/<token>", methods=["GET", "HEAD"])
def click(token: str) -> Response:
    return stored_redirect(token)


@tracking.route("/o/<token>", endpoint="open")
def open_pixel(token: str) -> Response:
    return pixel(token, "open")


@tracking.route("/i/<token>")
def initial_open(token: str) -> Response:
    return pixel(token, "initial_open")
